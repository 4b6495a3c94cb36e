# Xenstore: the real client over libxenstore (xenstore_client.cpp) and the simulated
# hypervisor's xs_wire server (the tree in xs_store.cpp, sockets and the epoll loop in
# sim_xs_server.cpp, the request handlers in xs_requests.cpp), plus dpnb-xenstored, which
# runs that server alone in the foreground for debugging with Xen's xenstore-* tools.
find_package(Threads REQUIRED)
target_sources(hypercall-shim PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/xenstore_client.cpp
  ${CMAKE_CURRENT_LIST_DIR}/xs_path.cpp
  ${CMAKE_CURRENT_LIST_DIR}/xs_store.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sim_xs_server.cpp
  ${CMAKE_CURRENT_LIST_DIR}/xs_requests.cpp)
target_link_libraries(hypercall-shim PRIVATE PkgConfig::XENSTORE spdlog::spdlog Threads::Threads)

add_executable(dpnb-xenstored ${CMAKE_CURRENT_LIST_DIR}/../../tools/dpnb-xenstored.cpp)
target_link_libraries(dpnb-xenstored PRIVATE dpnb::hv spdlog::spdlog)
dpnb_project_options(dpnb-xenstored)

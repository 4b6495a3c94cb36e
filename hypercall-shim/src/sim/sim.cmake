# The simulated hypervisor (src/sim): its server (domains, event channels, translation
# tables, with the xenstore server of src/xenstore embedded), the backend and guest faces
# that talk to it, and dpnb-simhv, which runs the server (or acts as its toolstack) from a
# shell. docs/simulator.md says what is simulated and how faithfully.
find_package(Threads REQUIRED)
target_sources(hypercall-shim PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/backend.cpp
  ${CMAKE_CURRENT_LIST_DIR}/event_channel.cpp
  ${CMAKE_CURRENT_LIST_DIR}/grant_pin.cpp
  ${CMAKE_CURRENT_LIST_DIR}/grant_table.cpp
  ${CMAKE_CURRENT_LIST_DIR}/guest.cpp
  ${CMAKE_CURRENT_LIST_DIR}/os.cpp
  ${CMAKE_CURRENT_LIST_DIR}/protocol.cpp
  ${CMAKE_CURRENT_LIST_DIR}/server.cpp
  ${CMAKE_CURRENT_LIST_DIR}/server_evtchn.cpp
  ${CMAKE_CURRENT_LIST_DIR}/server_iott.cpp
  ${CMAKE_CURRENT_LIST_DIR}/toolstack.cpp
  ${CMAKE_CURRENT_LIST_DIR}/translation_table.cpp)
target_link_libraries(hypercall-shim PRIVATE spdlog::spdlog Threads::Threads)

add_executable(dpnb-simhv ${CMAKE_CURRENT_LIST_DIR}/../../tools/dpnb-simhv.cpp)
target_link_libraries(dpnb-simhv PRIVATE dpnb::hv spdlog::spdlog CLI11::CLI11)
dpnb_project_options(dpnb-simhv)

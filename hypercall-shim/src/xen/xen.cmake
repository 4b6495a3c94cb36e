# Real Xen (src/xen): grant map/copy (libxengnttab), event channels (libxenevtchn), domain
# information (libxenctrl), the guest side over gntalloc, and the persistent-grant cache that
# is the translation table of reuse mode on stock Xen. Included from hypercall-shim's
# CMakeLists.txt; the libraries are private (no public header includes a Xen header), and
# CMake still passes them on to whoever links the static library.
target_sources(hypercall-shim PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/backend.cpp
  ${CMAKE_CURRENT_LIST_DIR}/domains.cpp
  ${CMAKE_CURRENT_LIST_DIR}/event_channels.cpp
  ${CMAKE_CURRENT_LIST_DIR}/grant_table.cpp
  ${CMAKE_CURRENT_LIST_DIR}/guest.cpp
  ${CMAKE_CURRENT_LIST_DIR}/map_status.cpp
  ${CMAKE_CURRENT_LIST_DIR}/persistent_grant_table.cpp
  ${CMAKE_CURRENT_LIST_DIR}/shared_pages.cpp
  ${CMAKE_CURRENT_LIST_DIR}/xen_errors.cpp
  ${CMAKE_CURRENT_LIST_DIR}/xen_log.cpp)
target_link_libraries(hypercall-shim PRIVATE
  PkgConfig::XENGNTTAB PkgConfig::XENEVTCHN PkgConfig::XENCTRL)

# xenctrl.h needs GNU extensions (anonymous unions, __align8__): its one user is built as
# gnu++20 on its own; everything else stays strict C++20.
add_library(dpnb-xenctrl OBJECT ${CMAKE_CURRENT_LIST_DIR}/xenctrl_info.cpp)
set_target_properties(dpnb-xenctrl PROPERTIES CXX_EXTENSIONS ON)
target_include_directories(dpnb-xenctrl PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_link_libraries(dpnb-xenctrl PRIVATE dpnb::core PkgConfig::XENCTRL)
dpnb_project_options(dpnb-xenctrl)
target_sources(hypercall-shim PRIVATE $<TARGET_OBJECTS:dpnb-xenctrl>)

# Exercises open/map/copy/event channels/gntalloc against a real Xen (the Xen lab, tests/e2e).
add_executable(dpnb-xen-probe ${CMAKE_CURRENT_LIST_DIR}/../../tools/dpnb-xen-probe.cpp)
target_link_libraries(dpnb-xen-probe PRIVATE dpnb::hv CLI11::CLI11)
dpnb_project_options(dpnb-xen-probe)

# Runs at install time (systemd/CMakeLists.txt sets the DPNB_* variables): installs
# dpnetbackd.service with ExecStart, --config, EnvironmentFile and Documentation pointing
# at this installation (the source names /usr/sbin and /etc, a distribution's layout), and
# the sample configuration as etc/dpnetback/dpnetback.toml unless one is there already.
function(dpnb_full out path)
  if(IS_ABSOLUTE "${path}")
    set(${out} "${path}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${path}" PARENT_SCOPE)
  endif()
endfunction()
dpnb_full(sbin "${DPNB_SBINDIR}")
dpnb_full(etc "${DPNB_ETC}")
dpnb_full(doc "${DPNB_DOC}")

file(READ "${DPNB_SOURCE_DIR}/dpnetbackd.service" unit)
string(REPLACE "ExecStart=/usr/sbin/dpnetbackd " "ExecStart=${sbin}/dpnetbackd " unit "${unit}")
string(REPLACE "--config /etc/dpnetback/" "--config ${etc}/dpnetback/" unit "${unit}")
string(REPLACE "EnvironmentFile=-/etc/default/" "EnvironmentFile=-${etc}/default/" unit "${unit}")
string(REPLACE "file:/usr/share/doc/dpnetback/" "file:${doc}/" unit "${unit}")
file(MAKE_DIRECTORY "${DPNB_STAGE_DIR}")
file(WRITE "${DPNB_STAGE_DIR}/dpnetbackd.service" "${unit}")
# file(INSTALL) honours DESTDIR and records the file in install_manifest.txt.
file(INSTALL "${DPNB_STAGE_DIR}/dpnetbackd.service"
     DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")

if(EXISTS "$ENV{DESTDIR}${etc}/dpnetback/dpnetback.toml")
  message(STATUS "Keeping: $ENV{DESTDIR}${etc}/dpnetback/dpnetback.toml (the sample is in ${doc})")
else()
  file(INSTALL "${DPNB_SAMPLE_CONFIG}" DESTINATION "${etc}/dpnetback"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()

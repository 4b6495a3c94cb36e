# Runs at install time (systemd/CMakeLists.txt sets the DPNB_* variables), when the prefix
# is known (`cmake --install --prefix` may change it): installs
#   dpnetbackd.service  with ExecStart, --config, EnvironmentFile and Documentation pointing
#                       at this installation (the source names /usr/sbin and /etc);
#   vif-dpnetback       into <etc>/xen/scripts;
#   dpnetback.toml      the sample configuration, as <etc>/dpnetback/dpnetback.toml unless
#                       one is there already.
# <etc> is /etc for the prefix /usr (as GNUInstallDirs says), else <prefix>/etc.
function(dpnb_full out path)
  if(IS_ABSOLUTE "${path}")
    set(${out} "${path}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${path}" PARENT_SCOPE)
  endif()
endfunction()
dpnb_full(sbin "${DPNB_SBINDIR}")
if(IS_ABSOLUTE "${DPNB_SYSCONFDIR}")
  set(etc "${DPNB_SYSCONFDIR}")
elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(etc "/${DPNB_SYSCONFDIR}")
else()
  set(etc "${CMAKE_INSTALL_PREFIX}/${DPNB_SYSCONFDIR}")
endif()
dpnb_full(doc "${DPNB_DOC}")

file(READ "${DPNB_SOURCE_DIR}/dpnetbackd.service" unit)
string(REPLACE "ExecStart=/usr/sbin/dpnetbackd " "ExecStart=${sbin}/dpnetbackd " unit "${unit}")
string(REPLACE "--config /etc/dpnetback/" "--config ${etc}/dpnetback/" unit "${unit}")
string(REPLACE "EnvironmentFile=-/etc/default/" "EnvironmentFile=-${etc}/default/" unit "${unit}")
string(REPLACE "file:/usr/share/doc/dpnetback/" "file:${doc}/" unit "${unit}")
file(MAKE_DIRECTORY "${DPNB_STAGE_DIR}")
file(WRITE "${DPNB_STAGE_DIR}/dpnetbackd.service" "${unit}")
# file(INSTALL) honours DESTDIR and records the file in install_manifest.txt.
if(DPNB_SYSTEMD_UNITDIR)
  set(unitdir "${DPNB_SYSTEMD_UNITDIR}")
else()
  set(unitdir "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endif()
file(INSTALL "${DPNB_STAGE_DIR}/dpnetbackd.service" DESTINATION "${unitdir}")

file(INSTALL "${DPNB_HOTPLUG_SCRIPT}" DESTINATION "${etc}/xen/scripts"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                      WORLD_READ WORLD_EXECUTE)

if(EXISTS "$ENV{DESTDIR}${etc}/dpnetback/dpnetback.toml")
  message(STATUS "Keeping: $ENV{DESTDIR}${etc}/dpnetback/dpnetback.toml (the sample is in ${doc})")
else()
  file(INSTALL "${DPNB_SAMPLE_CONFIG}" DESTINATION "${etc}/dpnetback"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()

#!/usr/bin/env bash
# Installs, with apt-get, every Debian 12 package dpnetback needs to build, test and run its
# demo, and only the ones that are missing. Safe to run again. Groups:
#   build  compilers, CMake, DPDK, the Xen libraries, spdlog, CLI11, toml++, JSON, systemd,
#          libcap (the daemon's capability drop)
#   test   GoogleTest, clang's libFuzzer runtime, clang-format, iproute2, promtool, valgrind,
#          Xen's xenstore-* tools (xenstore-utils, run against the simulated xenstore),
#          systemd (systemd-analyze verify and systemd-tmpfiles check the unit files)
#   e2e    QEMU, the Xen hypervisor and tools, a kernel and busybox for the Xen lab
#   bench  dpdk-testpmd (Debian ships it in dpdk-dev, not dpdk) and gnuplot, for bench/run.sh;
#          prometheus-cpp and cpp-httplib for dpnb-bench-http
#   package  debhelper, help2man (man pages) and lintian, for scripts/build-package.sh
# Usage: scripts/install-deps.sh [build] [test] [e2e] [bench] [package]   (default: build test)
set -euo pipefail

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(build test)

pkgs_build=(build-essential g++ cmake ninja-build pkg-config git
  libdpdk-dev dpdk libxen-dev libspdlog-dev libfmt-dev libcli11-dev
  libtomlplusplus-dev nlohmann-json3-dev libsystemd-dev libnuma-dev libcap-dev python3)
pkgs_test=(googletest libgtest-dev libgmock-dev clang libclang-rt-14-dev clang-format xenstore-utils
  clang-tidy iproute2 procps valgrind systemd prometheus)
# e2e (tests/e2e): QEMU runs Xen under TCG; the PV dom0 and domU boot the host's Debian
# kernel (linux-image-amd64: /boot/vmlinuz-* and its modules); xen-utils-4.17 has xl,
# oxenstored, xenconsoled and xen-init-dom0 (in /usr/lib/xen-4.17/bin); xenstore-utils the
# xenstore-* tools used in dom0 and copied into guests; iproute2 ip and ss in dom0;
# busybox-static, cpio, kmod (modprobe --show-depends), xz-utils build the initramfs images;
# iputils-ping (ping -M do: jumbo frames unfragmented, in dom0 and copied into guests),
# ethtool (the vhost-net tap's offloads) and strace (E2E_STRACE=1) in dom0.
# The hypervisor package only adds files to /boot: its postinst runs update-grub only where
# /boot/grub exists, and xen-utils' postinst starts nothing unless it runs under Xen 4.17.
pkgs_e2e=(qemu-system-x86 xen-hypervisor-4.17-amd64 xen-utils-4.17 xenstore-utils
  linux-image-amd64 busybox-static cpio kmod xz-utils iproute2 iputils-ping ethtool strace)
# bench (bench/run.sh): the ceiling (dpdk-testpmd) and the plots.
pkgs_bench=(dpdk-dev gnuplot-nox valgrind prometheus-cpp-dev libcpp-httplib-dev)
# package (scripts/build-package.sh, debian/): dpkg-buildpackage with debhelper 13, the man
# pages from --help, the package's check.
pkgs_package=(dpkg-dev debhelper help2man lintian)

want=()
for g in "${groups[@]}"; do
  case "$g" in
    build) want+=("${pkgs_build[@]}") ;;
    test) want+=("${pkgs_test[@]}") ;;
    e2e) want+=("${pkgs_e2e[@]}") ;;
    bench) want+=("${pkgs_bench[@]}") ;;
    package) want+=("${pkgs_package[@]}") ;;
    *) echo "install-deps: unknown group '$g' (build, test, e2e, bench, package)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

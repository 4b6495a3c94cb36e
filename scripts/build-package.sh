#!/usr/bin/env bash
# Builds the Debian package (debian/) from this checkout as it is, committed or not, and
# checks it with lintian. The tracked and untracked files (not the ignored ones: no build
# trees) are copied to OUT/src, `dpkg-buildpackage -us -uc -b` runs there, and the .deb
# files, the .changes and lintian's report land in OUT (default build/package).
# `dpkg-buildpackage -us -uc` in a clean checkout builds the source package as well.
#   DPNB_JOBS  parallel build jobs (default: number of CPUs)
# Exit status: 0 when the package built and lintian found no error, 1 otherwise.
# Needs scripts/install-deps.sh build package.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mkdir -p "${1:-build/package}" && cd "${1:-build/package}" && pwd)
jobs=${DPNB_JOBS:-$(nproc)}

rm -rf "$out/src" "$out"/dpnetback[_-]*
mkdir -p "$out/src"
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$out/src"

# ccache, when there is one, through CMake's launcher variable (read at configure time).
# debhelper 13 points HOME at a folder inside the build tree: name ccache's own cache and
# configuration, or every package build starts from an empty cache.
if command -v ccache >/dev/null; then
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache
  CCACHE_DIR=$(ccache --get-config cache_dir)
  export CCACHE_DIR
  for f in "${XDG_CONFIG_HOME:-$HOME/.config}/ccache/ccache.conf" "$HOME/.ccache/ccache.conf"; do
    if [ -f "$f" ]; then
      export CCACHE_CONFIGPATH=$f
      break
    fi
  done
fi
t0=$SECONDS
(cd "$out/src" && DEB_BUILD_OPTIONS="parallel=$jobs ${DEB_BUILD_OPTIONS:-}" \
  dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1 ||
  { tail -n 60 "$out/build.log"; echo "build-package: dpkg-buildpackage failed ($out/build.log)"; exit 1; }
echo "build-package: built in $((SECONDS - t0)) s:"
ls -1 "$out"/*.deb | sed 's/^/  /'

# lintian: errors fail, warnings are reported (docs/operations.md lists the ones kept).
changes=$(ls "$out"/dpnetback_*.changes)
lintian --info --display-info "$changes" >"$out/lintian.txt" 2>&1 || true
sed 's/^/  lintian: /' "$out/lintian.txt"
if grep -q '^E: ' "$out/lintian.txt"; then
  echo "build-package: lintian found errors"
  exit 1
fi
echo "build-package: lintian: $(grep -c '^E: ' "$out/lintian.txt") errors, $(grep -c '^W: ' "$out/lintian.txt") warnings"

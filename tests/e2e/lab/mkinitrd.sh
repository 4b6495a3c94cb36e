#!/bin/bash
# mkinitrd.sh: builds a busybox initramfs (newc cpio, gzip) for the Xen lab's dom0 and domUs.
# Neither boots from a disk: dom0's initramfs only mounts the host's root over 9p, and a
# domU sees nothing of the host, so everything a guest runs (kernel modules, host binaries
# with their shared libraries, scenario scripts) goes into its initramfs.
#
# Usage: mkinitrd.sh -o OUT.cpio.gz -i INIT [options]
#   -o OUT          the image to write
#   -i INIT         the script that becomes /init
#   -m MODULE       a kernel module of $KV, with what it depends on (modprobe --show-depends);
#                   /modlist lists them in load order for INIT's insmod loop
#   -b BINARY       a host executable (a path, or a name looked up in PATH), copied to /bin
#                   under its own name (in place of busybox's applet of that name), with
#                   every shared library ldd names at its path
#   -f SRC:DEST     a file copied to DEST
#   -d SRC:DEST     a folder copied to DEST (contents)
# Environment: KV (kernel version; default: the newest in /boot).
set -euo pipefail

die() { echo "mkinitrd: $*" >&2; exit 1; }

KV=${KV:-$(ls /boot | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)}
[ -n "$KV" ] && [ -d "/lib/modules/$KV" ] || die "no kernel modules for '$KV' (linux-image-amd64)"

out="" init="" mods=() bins=() files=() dirs=()
while getopts "o:i:m:b:f:d:" opt; do
  case $opt in
    o) out=$OPTARG ;;
    i) init=$OPTARG ;;
    m) mods+=("$OPTARG") ;;
    b) bins+=("$OPTARG") ;;
    f) files+=("$OPTARG") ;;
    d) dirs+=("$OPTARG") ;;
    *) die "usage: mkinitrd.sh -o OUT -i INIT [-m MODULE] [-b BINARY] [-f SRC:DEST] [-d SRC:DEST]" ;;
  esac
done
[ -n "$out" ] && [ -n "$init" ] || die "-o and -i are required"
[ -f "$init" ] || die "no init script $init"
busybox=$(command -v busybox) || die "busybox not found (busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not static (busybox-static)"; fi

root=$(mktemp -d "${TMPDIR:-/tmp}/dpnb-initrd.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,proc,sys,dev,newroot,host,tmp,run,etc,lib/modules/"$KV"}
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do
  [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
done

# Kernel modules and their dependencies, in load order, decompressed (busybox insmod
# cannot read .xz/.zst).
: > "$root/modlist"
if [ ${#mods[@]} -gt 0 ]; then
  for m in "${mods[@]}"; do
    deps=$(modprobe -S "$KV" --show-depends "$m" 2>&1) || die "module $m: $deps"
    printf '%s\n' "$deps" | awk '/^insmod/{print $2}'
  done | awk '!seen[$0]++' | while read -r f; do
    rel=${f#/lib/modules/$KV/}
    dest=$root/lib/modules/$KV/${rel%.ko*}.ko
    mkdir -p "$(dirname "$dest")"
    case $f in
      *.xz) xz -dc "$f" > "$dest" ;;
      *.zst) zstd -qdc "$f" > "$dest" ;;
      *.gz) gzip -dc "$f" > "$dest" ;;
      *) cp "$f" "$dest" ;;
    esac
    echo "${dest#$root}" >> "$root/modlist"
  done
fi

# Host binaries with their shared libraries (the guest has no other copy of them).
copy_lib() {
  local lib=$1
  [ -e "$root$lib" ] && return 0
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
}
for b in "${bins[@]}"; do
  path=$b
  [[ $b == */* ]] || path=$(command -v "$b") || die "binary $b not found in PATH"
  [ -x "$path" ] || die "binary $path is not executable"
  # Not through busybox's applet link of the same name (that would overwrite busybox).
  rm -f "$root/bin/$(basename "$b")"
  # Debug info stays on the host: the image is read by xl and unpacked into guest memory.
  strip --strip-debug -o "$root/bin/$(basename "$b")" "$path" 2>/dev/null ||
    cp -L "$path" "$root/bin/$(basename "$b")"
  if ldd_out=$(ldd "$path" 2>&1); then
    if grep -q 'not found' <<<"$ldd_out"; then die "$path: $(grep 'not found' <<<"$ldd_out")"; fi
    # "libx.so.1 => /path/libx.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
    for lib in $(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$ldd_out"); do
      copy_lib "$lib"
    done
  fi
done

for spec in "${files[@]}"; do
  src=${spec%%:*} dest=${spec#*:}
  [ -f "$src" ] || die "no file $src"
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$src" "$root$dest"
done
for spec in "${dirs[@]}"; do
  src=${spec%%:*} dest=${spec#*:}
  [ -d "$src" ] || die "no folder $src"
  mkdir -p "$root$dest"
  cp -rL "$src/." "$root$dest/"
done

cp "$init" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
mv "$out.tmp" "$out"

#!/usr/bin/env bash
# Unpacks a second QEMU beside the system's (bookworm's 7.2) without
# installing it: the debs of bookworm-backports' qemu-system-x86 10.0, with
# the firmware it needs, go to ${VFIOKIT_CACHE:-$HOME/.cache/vfiokit}/qemu/<version>/
# and are reused when present. Prints the path of the binary to run on
# stdout (bin/qemu-system-x86_64, a wrapper that points QEMU at its modules).
#
# Why not apt-get install: it would replace 7.2, which the lab and the other
# tests use. Backports are built against bookworm, so the shared libraries
# are the ones 7.2 already pulled in; only QEMU's own packages and a newer
# SeaBIOS (10.0 depends on seabios >> 1.16.3) are unpacked. QEMU finds its
# firmware relative to its binary (util/cutils.c get_relocated_path), so the
# unpacked tree works from any directory.
#
# Usage: scripts/fetch-qemu.sh [suite]   (default bookworm-backports)
set -euo pipefail

suite=${1:-bookworm-backports}
cache=${VFIOKIT_CACHE:-$HOME/.cache/vfiokit}/qemu
packages=(qemu-system-x86 qemu-system-common qemu-system-data seabios)
# Every loadable module too: QEMU searches its build's module directory,
# /usr/lib/x86_64-linux-gnu/qemu, for a module its own tree lacks, finds the
# system 7.2's and aborts on loading it (util/module.c: "Only modules from the
# same build can be loaded", then an assertion), e.g. in qom-list-types. The
# 10.0 builds of the packages that hold the system's modules cover them all.
module_packages=(qemu-block-extra qemu-system-gui qemu-system-modules-spice qemu-system-modules-opengl)

apt_dir=$(mktemp -d /tmp/vfiokit-qemu-apt.XXXXXX)
trap 'rm -rf "$apt_dir"' EXIT
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources"
# The machine's own Debian mirror, with the suite swapped: the first stanza of
# its deb822 sources (or deb.debian.org when there is none).
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
cat >"$apt_dir/sources/vfiokit.sources" <<EOF
Types: deb
URIs: ${uri:-http://deb.debian.org/debian}
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root
  -o Acquire::Check-Valid-Until=false)

version_of() {
  apt-cache "${apt_opts[@]}" show "$1" 2>/dev/null | awk -v s="$2" '
    /^Version:/ {v=$2} /^$/ {if (v ~ s && !done) {print v; done=1} v=""}
    END {if (v ~ s && !done) print v}'
}

# A cache hit needs no network: the newest version already unpacked for this suite.
marker_glob="$cache/*/.complete-$suite"
if ! apt-get "${apt_opts[@]}" update -qq 2>/dev/null; then
  for m in $marker_glob; do
    [ -f "$m" ] && { echo "$(dirname "$m")/bin/qemu-system-x86_64"; exit 0; }
  done
  echo "fetch-qemu: apt-get update for $suite failed and nothing is cached in $cache" >&2
  exit 1
fi
# The suite's own build (backports carry "bpo"; other suites take the first).
version=$(version_of qemu-system-x86 "bpo|deb13|^1:1[0-9]")
[ -n "$version" ] || { echo "fetch-qemu: $suite has no qemu-system-x86 newer than 7.2" >&2; exit 1; }
short=${version#*:}; short=${short%%+*}
dest="$cache/$short"
if [ -f "$dest/.complete-$suite" ]; then
  echo "$dest/bin/qemu-system-x86_64"
  exit 0
fi

# The tree is built in $dest.partial and becomes $dest only once its QEMU
# runs, so an interrupted fetch is never taken for a cached one.
publish() {
  chmod +x "$dest.partial/bin/qemu-system-x86_64"
  "$dest.partial/bin/qemu-system-x86_64" --version >/dev/null
  touch "$dest.partial/.complete-$suite"
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
  echo "$dest/bin/qemu-system-x86_64"
  exit 0
}

rm -rf "$dest.partial"
case $suite in
bookworm*) ;;
*)
  # A suite newer than the machine's (sid's QEMU 11.1 needs glibc 2.43 and
  # sid's builds of its libraries): unpacking its debs over bookworm's
  # libraries would not run. Instead a whole sid root made by mmdebstrap,
  # holding QEMU and exactly the libraries it was built against, and a
  # wrapper that starts QEMU with the root's own dynamic loader and library
  # path, so that QEMU runs in this machine's namespace (its sockets, memfds,
  # /dev and the caller's paths are the same as the system QEMU's), no
  # chroot and no root needed to run it. QEMU then takes its firmware from
  # the root (-L: with the loader as /proc/self/exe, the exec-dir-relative
  # data path of util/cutils.c get_relocated_path points nowhere useful) and
  # its modules from the root's module directory (QEMU_MODULE_DIR).
  command -v mmdebstrap >/dev/null || { echo "fetch-qemu: $suite needs mmdebstrap (apt-get install mmdebstrap; scripts/install.sh does)" >&2; exit 1; }
  mkdir -p "$dest.partial"
  mmdebstrap --quiet --variant=essential --include=qemu-system-x86 \
    --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$suite" "$dest.partial/root" "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${uri:-http://deb.debian.org/debian} $suite main" >&2
  mkdir -p "$dest.partial/bin"
  cat >"$dest.partial/bin/qemu-system-x86_64" <<'WRAPPER'
#!/bin/sh
root=$(dirname "$(readlink -f "$0")")/../root
lib=$root/usr/lib/x86_64-linux-gnu
QEMU_MODULE_DIR="$lib/qemu" exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" \
  "$root/usr/bin/qemu-system-x86_64" -L "$root/usr/share/qemu" "$@"
WRAPPER
  publish
  ;;
esac
mkdir -p "$dest.partial/debs"
(
  cd "$dest.partial/debs"
  for p in "${packages[@]}" "${module_packages[@]}"; do
    v=$(version_of "$p" "bpo|deb13")
    [ -n "$v" ] || v=$(version_of "$p" ".")
    if [ -z "$v" ]; then
      case " ${module_packages[*]} " in *" $p "*) continue ;; esac
      echo "fetch-qemu: $suite has no $p" >&2
      exit 1
    fi
    apt-get "${apt_opts[@]}" download -qq "$p=$v" >&2
  done
)
for deb in "$dest.partial"/debs/*.deb; do dpkg-deb -x "$deb" "$dest.partial"; done
rm -rf "$dest.partial/debs"
# The binary to run: QEMU_MODULE_DIR puts this build's modules first
# (util/module.c module_load_dso searches it before the configured directory).
mkdir -p "$dest.partial/bin"
cat >"$dest.partial/bin/qemu-system-x86_64" <<'WRAPPER'
#!/bin/sh
here=$(dirname "$(readlink -f "$0")")/..
QEMU_MODULE_DIR="$here/usr/lib/x86_64-linux-gnu/qemu" exec "$here/usr/bin/qemu-system-x86_64" "$@"
WRAPPER
publish

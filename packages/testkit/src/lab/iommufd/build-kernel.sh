#!/usr/bin/env bash
# Builds (once) the lab's iommufd kernel and prints the folder that holds it.
#
# No Debian kernel has CONFIG_IOMMUFD (bookworm's 6.1, trixie's 6.12 and
# sid's 7.2 all leave it unset), so the iommufd lab builds its own from
# Debian's linux-source-7.2 (sid): x86_64_defconfig + kvm_guest.config +
# kernel.config (beside this script), everything built in, `nice make -j2
# bzImage`. About 29 minutes of CPU cold (90 of wall time at nice 19 on a
# machine shared with six other jobs; some 15 on 2 idle cores). The live
# update of an iommufd (IOMMU_IOAS_MAP_FILE, IOMMU_IOAS_CHANGE_PROCESS)
# needs 6.13 or later. trixie's 6.12 stays selectable
# (VFIOKIT_KERNEL_SUITE=trixie VFIOKIT_KERNEL_SOURCE=linux-source-6.12;
# about 15 minutes of CPU cold); the mock answers as either (the lab tells
# it which booted).
#
# sid keeps only the newest revision of its newest kernel series. When sid
# lists a newer revision of the series than the one cached, the cached
# build is reused and the log says so (VFIOKIT_KERNEL_REFRESH=1 builds the
# new revision); when sid no longer lists the package at all, a cached
# build of the series is reused, and without one the script stops (exit 1)
# naming what sid has and how to choose another kernel.
#
# The result is cached in
#   ${VFIOKIT_CACHE:-$HOME/.cache/vfiokit}/kernels/<source-version>-<config-hash>/
# holding bzImage, config (the final .config), headers/ (a copy of the uapi
# headers below) and build.log, and is
# reused when present: the key changes only when Debian's source package
# moves or kernel.config / this recipe changes.
#
# The suite is reached through a private apt configuration under the cache (the
# machine's own Debian mirror with the suite swapped), so the system's apt
# sources and lists stay untouched; the source package is only downloaded and
# unpacked (dpkg-deb -x), never installed.
#
# The kernel's uapi headers (make headers_install: linux/iommufd.h and the
# cdev part of linux/vfio.h, which Debian's 6.1 linux-libc-dev lacks) are
# installed first, before the long compile, into kernels/headers-<version>/:
# vfio-core's ABI test checks its uapi module against them (6.12's layouts
# and 7.2's additions).
#
# Usage: build-kernel.sh [dir|headers]
#   dir: print the cache folder it would use and exit
#   headers: install (or reuse) the uapi headers only and print their folder
# Progress goes to stderr; the folder (containing bzImage) is the last line on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/kernel.config
suite=${VFIOKIT_KERNEL_SUITE:-sid}
source_pkg=${VFIOKIT_KERNEL_SOURCE:-linux-source-7.2}
# The series (7.2): cached builds of another revision of it may stand in.
series=${source_pkg#linux-source-}
cache=${VFIOKIT_CACHE:-$HOME/.cache/vfiokit}/kernels
log() { echo "build-kernel: $*" >&2; }

# Tools a kernel build needs, with the Debian package that gives each.
missing=()
need() { command -v "$1" >/dev/null || missing+=("$2 (for $1)"); }
need_header() { [ -f "/usr/include/$1" ] || missing+=("$2 (for <$1>)"); }
need make make; need gcc gcc; need flex flex; need bison bison; need bc bc; need perl perl
need xz xz-utils; need tar tar; need dpkg-deb dpkg; need apt-get apt; need rsync rsync
need_header gelf.h libelf-dev; need_header openssl/opensslv.h libssl-dev
if [ ${#missing[@]} -gt 0 ]; then
  log "cannot build the lab kernel, missing: ${missing[*]}"
  log "install them with 'apt-get install flex bison libelf-dev bc libssl-dev rsync' (scripts/install.sh does when run as root)"
  exit 2
fi

# The private apt for $suite. Its lists are refreshed when older than a day,
# so a warm cache costs no network at all.
apt_dir=$cache/apt-$suite
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources"
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
cat >"$apt_dir/sources/vfiokit.sources" <<SRC
Types: deb
URIs: ${uri:-http://deb.debian.org/debian}
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o Dir::State::status=/dev/null
  -o Debug::NoLocking=1)
[ "$(id -u)" = 0 ] && apt_opts+=(-o APT::Sandbox::User=root)
if [ -z "$(find "$apt_dir/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  log "apt-get update for $suite (private lists in $apt_dir)"
  apt-get "${apt_opts[@]}" update -qq >&2 || log "apt-get update for $suite reported errors; going on with what is listed"
fi
# The steps that decide the kernel, hashed into the cache key with the
# fragment (log lines and this file's comments are not part of the key).
configure() {
  make -s x86_64_defconfig kvm_guest.config >&2
  scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
  make -s olddefconfig >&2
}
compile() {
  # exec: the background job is make itself, so stopping it stops the build.
  exec nice make -j2 bzImage
}
config_hash=$( { cat "$fragment"; declare -f configure compile; } | sha256sum | cut -c1-12)
listed=$(apt-cache "${apt_opts[@]}" show "$source_pkg" 2>/dev/null | awk '/^Version:/ {print $2; exit}' || true)
# The revisions of the series already cached, newest first: complete builds
# with this config, or (for `headers`) complete uapi headers.
cached_revisions() {
  local d v
  if [ "$1" = headers ]; then
    set -- "$cache/headers-$series".*
  else
    set -- "$cache/$series".*-"$config_hash"
  fi
  for d in "$@"; do
    [ -f "$d/.complete" ] || continue
    v=${d##*/}; v=${v#headers-}; echo "${v%-"$config_hash"}"
  done | sort -rV
}
want=build
[ "${1:-}" = headers ] && want=headers
have=$(cached_revisions "$want" | head -1)
if [ -n "$listed" ]; then
  version=$listed
  if [ -n "$have" ] && [ "$have" != "$listed" ] && [ "${VFIOKIT_KERNEL_REFRESH:-}" != 1 ] &&
    [ -z "$(cached_revisions "$want" | grep -Fx "$listed" || true)" ]; then
    # sid moved the series on: the cached revision stands in (the lab's
    # answers are held to the series), rather than a 30-CPU-minute rebuild
    # in the middle of a run.
    log "$suite has $source_pkg $listed, not built here; reusing the cached $have (set VFIOKIT_KERNEL_REFRESH=1 to build $listed)"
    version=$have
  fi
elif [ -n "$have" ]; then
  log "$suite no longer lists $source_pkg; reusing the cached $have"
  version=$have
else
  # sid keeps only its newest kernel series: when 7.2 gives way to the
  # next, say what the suite has now and how to go on.
  others=$(apt-cache "${apt_opts[@]}" pkgnames linux-source- 2>/dev/null | grep -E '^linux-source-[0-9.]+$' | sort -V | tr '\n' ' ' || true)
  if [ -n "$others" ]; then
    log "$suite lists no $source_pkg and none is cached; it has: ${others% }. Set VFIOKIT_KERNEL_SOURCE to one of them (check kernel.config against it; the mock's answers are held to 7.2 and 6.12, so the iommufd lab may find new differences, see packages/testkit/src/lab/README.md), or VFIOKIT_KERNEL_SUITE=trixie VFIOKIT_KERNEL_SOURCE=linux-source-6.12 for 6.12 (no iommufd live update)"
  else
    log "$suite lists no $source_pkg and none is cached (is the mirror in /etc/apt/sources.list.d/debian.sources reachable?)"
  fi
  exit 1
fi
key=$version-$config_hash
out=$cache/$key
headers=$cache/headers-$version
if [ "${1:-}" = dir ]; then echo "$out"; exit 0; fi
if [ "${1:-}" = headers ] && [ -f "$headers/.complete" ]; then echo "$headers/include"; exit 0; fi
if [ -f "$out/.complete" ] && [ "${1:-}" != headers ]; then
  log "reusing $out (linux $version, config $config_hash)"
  echo "$out"
  exit 0
fi

started=$SECONDS
# The source tree is keyed on the version only: a changed config rebuilds
# incrementally in it (kbuild's fixdep recompiles only what the changed
# options touch), and an interrupted build resumes where it stopped.
work=$cache/build-$version
mkdir -p "$work"
deb=$(ls "$work"/"$source_pkg"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  log "downloading $source_pkg=$version from $suite"
  (cd "$work" && apt-get "${apt_opts[@]}" download -q "$source_pkg=$version" >&2)
  deb=$(ls "$work"/"$source_pkg"_*.deb | head -1)
fi
src=$work/src
if [ ! -f "$src/.unpacked" ]; then
  log "unpacking $(basename "$deb")"
  rm -rf "$work/deb" "$src"
  dpkg-deb -x "$deb" "$work/deb"
  tarball=$(ls "$work"/deb/usr/src/linux-source-*.tar.* | head -1)
  mkdir -p "$src"
  tar -xf "$tarball" -C "$src" --strip-components=1
  rm -rf "$work/deb"
  touch "$src/.unpacked"
fi

cd "$src"
# The uapi headers depend on the source only, not on the config.
if [ ! -f "$headers/.complete" ]; then
  log "installing linux $version's uapi headers into $headers"
  rm -rf "$headers.partial"
  make -s headers_install INSTALL_HDR_PATH="$headers.partial" >&2
  touch "$headers.partial/.complete"
  rm -rf "$headers"
  mv "$headers.partial" "$headers"
fi
if [ "${1:-}" = headers ]; then echo "$headers/include"; exit 0; fi
log "configuring: x86_64_defconfig + kvm_guest.config + $(basename "$fragment")"
configure
# Kconfig drops what a dependency forbids without a word; every option the
# fragment asks for must be in the final .config as asked.
bad=()
while IFS= read -r line; do
  case "$line" in ''|'#'*) continue ;; esac
  opt=${line%%=*}; val=${line#*=}
  # A symbol this kernel's Kconfig no longer defines is not a dropped option
  # but a retired one (VFIO_PCI_MMAP left in 6.15, when mmap of BARs became
  # unconditional): say so and go on, so one fragment serves 6.12 and 7.2.
  if ! grep -rqE --include='Kconfig*' "^[[:space:]]*(menu)?config[[:space:]]+${opt#CONFIG_}[[:space:]]*$" .; then
    log "linux $version has no $opt any more; its line in $(basename "$fragment") is ignored"
    continue
  fi
  if [ "$val" = n ]; then
    grep -qx "$opt=[ym]" .config && bad+=("$opt (asked n)")
  else
    grep -qx "$opt=$val" .config || bad+=("$opt (asked $val, got $(grep -E "^$opt=|^# $opt is not set" .config || echo 'nothing'))")
  fi
done <"$fragment"
if [ ${#bad[@]} -gt 0 ]; then
  log "the final .config does not have: ${bad[*]}; a dependency of these options is unmet (see drivers/iommu/iommufd/Kconfig, drivers/vfio/Kconfig)"
  exit 1
fi

log "building bzImage of linux $version with nice make -j2 (7.2: about 29 minutes of CPU, 6.12: 15; wall time on 2 idle cores about half that, far more under load; log in $work/build.log)"
mkdir -p "$out.partial"
build_started=$SECONDS
set +e
compile >"$work/build.log" 2>&1 &
make_pid=$!
# Ctrl-C or a kill of this script stops the build too (make resumes where it
# stopped on the next run: the source tree stays until a build completes).
trap 'kill "$make_pid" 2>/dev/null' EXIT
while kill -0 "$make_pid" 2>/dev/null; do
  sleep 60
  objs=$(find . -name '*.o' -newer .config 2>/dev/null | wc -l)
  log "building: $(( (SECONDS - build_started) / 60 )) min, $objs objects compiled"
done
wait "$make_pid"
rc=$?
trap - EXIT
set -e
if [ $rc -ne 0 ]; then
  log "make bzImage failed (exit $rc); the end of $work/build.log:"
  tail -20 "$work/build.log" >&2
  if grep -qiE 'flex: not found|bison: not found|gelf.h|openssl/|bc: not found' "$work/build.log"; then
    log "a build tool is missing: apt-get install flex bison libelf-dev bc libssl-dev"
  fi
  exit 1
fi
cp -a "$headers" "$out.partial/headers"
cp arch/x86/boot/bzImage "$out.partial/bzImage"
cp .config "$out.partial/config"
cp "$work/build.log" "$out.partial/build.log"
elapsed=$(( SECONDS - build_started ))
echo "linux $version, config $config_hash, bzImage built in $((elapsed / 60)) min $((elapsed % 60)) s" >"$out.partial/built"
touch "$out.partial/.complete"
rm -rf "$out"
mv "$out.partial" "$out"
# The source tree (about 1.5 GB) is only needed again for another config.
rm -rf "$work"
log "built linux $version in $(( (SECONDS - started) / 60 )) min (make: $((elapsed / 60)) min $((elapsed % 60)) s); cached in $out"
echo "$out"

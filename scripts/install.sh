#!/usr/bin/env bash
# Installs everything vfiokit needs on a fresh Debian machine: the packages the
# lab and the QEMU tests use (when run as root; flex, bison, libelf-dev, bc,
# libssl-dev and rsync build the iommufd lab's kernel and its headers), pnpm through corepack, and the
# workspace's dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# qemu-user runs the aarch64 and ppc64le builds of vfio-core's addon in the
# release check (packages/testkit/src/release).
apt_packages=(qemu-system-x86 qemu-system-ppc qemu-utils busybox-static cpio xz-utils pciutils gcc
  gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  make flex bison libelf-dev bc libssl-dev rsync qemu-user mmdebstrap)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install: apt packages: ${missing[*]}"
    apt-get update -qq || echo "install: apt-get update reported errors; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# step WHAT COMMAND...: ends the install naming WHAT when COMMAND fails.
# shellcheck source=install-step.sh
source scripts/install-step.sh

# QEMU 10.0 beside the system's 7.2 for the QEMU test matrix, unpacked into
# ${VFIOKIT_CACHE:-$HOME/.cache/vfiokit}/qemu/ (reused when present).
if command -v apt-get >/dev/null; then
  step "QEMU 10.0" scripts/fetch-qemu.sh bookworm-backports
fi
# QEMU 11.1 from sid for `vfiokit upgrade` (cpr-transfer with VFIO needs 10.1+):
# a sid root made by mmdebstrap (it needs sid's glibc and libraries), about
# 2 minutes and 200 MB cold, reused while sid's version stays the same.
if command -v apt-get >/dev/null && command -v mmdebstrap >/dev/null; then
  step "QEMU 11.1" scripts/fetch-qemu.sh sid
fi

if ! command -v cargo >/dev/null; then
  echo "install: Rust (cargo) is required to build crates/vfio-core; install it with rustup" >&2
  exit 1
fi

# The iommufd lab's kernel (no Debian kernel has CONFIG_IOMMUFD): Debian
# sid's linux-source-7.2 built once with packages/testkit/src/lab/iommufd/
# kernel.config, cached in ${VFIOKIT_CACHE:-$HOME/.cache/vfiokit}/kernels/
# <version>-<config hash>/ and never rebuilt while the source version and
# the config are unchanged (a warm run takes seconds; a newer sid revision
# of 7.2, or sid dropping 7.2, reuses the cached build and says so). COLD
# COST: about 29 minutes of CPU (7.2.13, measured whole: 1459 s user + 266 s
# system; some 15 minutes of wall time on 2 idle cores, more under load),
# the largest single item of a cold CI run. Its uapi headers come first
# (about 3 minutes cold): vfio-core's ABI test checks the 6.13+ calls live
# update uses (IOMMU_IOAS_MAP_FILE, IOMMU_IOAS_CHANGE_PROCESS) against them.
# The build's progress goes to stderr once a minute.
if command -v apt-get >/dev/null; then
  step "lab kernel headers" bash packages/testkit/src/lab/iommufd/build-kernel.sh headers
  step "iommufd lab kernel" bash packages/testkit/src/lab/iommufd/build-kernel.sh
  # Only the headers of trixie's 6.12 (about 3 minutes cold, no compile):
  # the ABI test checks uapi::iommufd and the cdev ioctls against 6.12's
  # layouts (7.2 grew some structs at the end and takes the old sizes
  # through argsz; Debian's 6.1 linux-libc-dev has no linux/iommufd.h).
  step "6.12 kernel headers" env VFIOKIT_KERNEL_SUITE=trixie VFIOKIT_KERNEL_SOURCE=linux-source-6.12 bash packages/testkit/src/lab/iommufd/build-kernel.sh headers
fi

# The pseries lab runs vfio-lab inside a ppc64le guest: a static binary
# linked by gcc-powerpc64le-linux-gnu (.cargo/config.toml).
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx powerpc64le-unknown-linux-gnu; then
  rustup target add powerpc64le-unknown-linux-gnu
fi
# The arm64 lab does the same for an aarch64 guest (gcc-aarch64-linux-gnu).
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi

# corepack's signature check fails against this registry; the pin in
# package.json's packageManager still decides the version.
export COREPACK_INTEGRITY_KEYS=0
corepack enable
pnpm --version >/dev/null
pnpm install --frozen-lockfile

# The DRA driver's tests run a real kube-apiserver, kube-scheduler and etcd:
# built (about 8-18 minutes cold, Go required) or reused from
# ${VFIOKIT_CACHE:-$HOME/.cache/vfiokit}/kubernetes/ (see packages/dra/README.md).
if command -v go >/dev/null; then
  step "Kubernetes binaries" bash packages/dra/scripts/kube-binaries.sh all
else
  echo "install: Go is not installed, so the DRA tests cannot build kube-apiserver; install golang >= 1.25" >&2
fi

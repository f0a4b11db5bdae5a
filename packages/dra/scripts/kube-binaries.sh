#!/usr/bin/env bash
# Builds (once) and prints the location of the real Kubernetes components the
# DRA tests run against: kube-apiserver and kube-scheduler built from the
# k8s.io/kubernetes Go module, etcd from Debian trixie's etcd-server package,
# and kubelet-sim (the kubelet's side of DRA, built from ../kubelet-sim with
# Kubernetes' own generated gRPC clients from k8s.io/kubelet).
#
# Everything lands in ${VFIOKIT_CACHE:-$HOME/.cache/vfiokit}/kubernetes/v$K8S_VERSION/
# and is reused when present: the control plane is keyed on the version and
# this recipe, kubelet-sim on the hash of its own sources. A cold build takes
# about 8 minutes of wall time on 2 cores (2.8 GB peak); a warm one is instant.
#
# Usage: kube-binaries.sh [all|control-plane|etcd|kubelet-sim|dir]
#   prints the cache directory (bin/ holds the four programs) on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=${K8S_VERSION:-1.37.2}
# The staging modules (k8s.io/api, client-go, ...) are released as v0.<minor>.<patch>.
STAGING_VERSION="0.${K8S_VERSION#*.}"
ETCD_SUITE=trixie
what=${1:-all}

cache_root=${VFIOKIT_CACHE:-$HOME/.cache/vfiokit}/kubernetes
dir=$cache_root/v$K8S_VERSION
mkdir -p "$dir/bin"
if [ "$what" = dir ]; then echo "$dir"; exit 0; fi

log() { echo "kube-binaries: $*" >&2; }

build_control_plane() {
  # Keyed on the version and this function's own text, not on the whole script.
  local recipe_hash stamp
  recipe_hash=$(declare -f build_control_plane | sha256sum | cut -c1-16)
  stamp=$dir/bin/.control-plane-$recipe_hash
  if [ -x "$dir/bin/kube-apiserver" ] && [ -x "$dir/bin/kube-scheduler" ] && [ -f "$stamp" ]; then
    return 0
  fi
  command -v go >/dev/null || { log "Go is required to build kube-apiserver (install golang >= 1.25)"; exit 1; }
  log "building kube-apiserver and kube-scheduler v$K8S_VERSION (about 8 minutes cold)"
  local work=$dir/work
  rm -rf "$work"; mkdir -p "$work"
  # go install refuses k8s.io/kubernetes (its go.mod replaces the staging
  # modules with ./staging paths), so a wrapper module requires it and points
  # each staging module at its published release instead.
  local modjson gomod
  modjson=$(cd "$work" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION")
  gomod=$(printf '%s' "$modjson" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$gomod" ] || { log "go mod download printed no GoMod for k8s.io/kubernetes@v$K8S_VERSION"; exit 1; }
  {
    echo "module vfiokit.local/kube-build"
    echo
    grep -E '^go [0-9]' "$gomod"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    grep -oE 'k8s\.io/[A-Za-z0-9._/-]+ => \./staging/' "$gomod" | awk -v v="v$STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } >"$work/go.mod"
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
  (cd "$work" && go mod tidy >&2)
  local v=k8s.io/component-base/version
  local ldflags="-s -w -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=${K8S_VERSION%%.*} -X $v.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $v.gitTreeState=clean"
  for cmd in kube-apiserver kube-scheduler; do
    log "go build $cmd"
    (cd "$work" && nice -n 15 go build -trimpath -ldflags "$ldflags" -o "$dir/bin/$cmd.partial" "k8s.io/kubernetes/cmd/$cmd")
    mv -f "$dir/bin/$cmd.partial" "$dir/bin/$cmd"
  done
  rm -f "$dir"/bin/.control-plane-*
  touch "$stamp"
  rm -rf "$work"
}

build_etcd() {
  if [ -x "$dir/bin/etcd" ]; then return 0; fi
  log "fetching etcd-server from Debian $ETCD_SUITE"
  # A private apt configuration reaches trixie without changing what this
  # machine installs by default (bookworm's etcd is 3.4, too old for 1.37).
  local apt=$dir/apt
  rm -rf "$apt"; mkdir -p "$apt/sources" "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/deb"
  awk -v suite="$ETCD_SUITE" 'BEGIN{RS="";ORS="\n\n"} NR==1{sub(/Suites:[^\n]*/, "Suites: " suite); print}' \
    /etc/apt/sources.list.d/debian.sources >"$apt/sources/trixie.sources"
  local opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt/sources"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1)
  apt-get "${opts[@]}" update -qq >&2
  (cd "$apt/deb" && apt-get "${opts[@]}" download etcd-server >&2)
  dpkg-deb -x "$apt"/deb/etcd-server_*.deb "$apt/root"
  mv -f "$apt/root/usr/bin/etcd" "$dir/bin/etcd"
  rm -rf "$apt"
}

build_kubelet_sim() {
  local src=$here/../kubelet-sim
  local hash
  hash=$(cd "$src" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
  local out=$dir/kubelet-sim-$hash/kubelet-sim
  if [ ! -x "$out" ]; then
    log "building kubelet-sim ($hash)"
    mkdir -p "$(dirname "$out")"
    (cd "$src" && nice -n 15 go build -trimpath -o "$out.partial" .)
    mv -f "$out.partial" "$out"
  fi
  ln -sfn "$out" "$dir/bin/kubelet-sim"
}

# One builder at a time per target (CI and a developer's test may race).
locked() { (flock 9; "$@") 9>"$dir/.lock-$1"; }

case "$what" in
  all) locked build_etcd; locked build_kubelet_sim; locked build_control_plane ;;
  control-plane) locked build_control_plane ;;
  etcd) locked build_etcd ;;
  kubelet-sim) locked build_kubelet_sim ;;
  *) log "unknown target $what (all, control-plane, etcd, kubelet-sim, dir)"; exit 2 ;;
esac
echo "$dir"

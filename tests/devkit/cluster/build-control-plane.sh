#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl (k8s.io/kubernetes) and etcd from the Go
# module proxy into a cache outside the repository, keyed by version. Idempotent: when the
# binaries for these versions are already cached it prints their directory and exits.
#
# Usage: tests/devkit/cluster/build-control-plane.sh     -> prints the bin directory on stdout
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
CACHE_ROOT="${ROLLOUT_BOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rollout-bot}"
BIN_DIR="$CACHE_ROOT/control-plane/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION"
HERE="$(cd "$(dirname "$0")" && pwd)"

log() { printf '[control-plane] %s\n' "$*" >&2; }

if [[ -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/kube-controller-manager" && -x "$BIN_DIR/kubectl" && -x "$BIN_DIR/etcd" ]]; then
  echo "$BIN_DIR"
  exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$BIN_DIR.partial"
start=$(date +%s)

# Kubernetes: a wrapper module whose replace block maps every staging module (required by
# k8s.io/kubernetes at the nonexistent v0.0.0) to its published tag.
log "building kube-apiserver, kube-controller-manager and kubectl v$K8S_VERSION (first time only; ~15-30 min on 2 cores)"
cd "$HERE/gobuild/k8s"
minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
ldflags="-s -w"
for kv in "gitVersion=v$K8S_VERSION" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean" \
          "buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
  ldflags="$ldflags -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done
go build -v -trimpath -ldflags "$ldflags" -o "$BIN_DIR.partial/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl 2>&1 \
  | awk '{ n++; if (n % 200 == 0) { printf "[control-plane] compiled %d packages\n", n > "/dev/stderr"; fflush() } }'
for bin in kube-apiserver kube-controller-manager kubectl; do
  test -x "$BIN_DIR.partial/$bin" || { log "$bin build failed"; exit 1; }
done

log "building etcd v$ETCD_VERSION"
cd "$HERE/gobuild/etcd"
go build -trimpath -ldflags "-s -w" -o "$BIN_DIR.partial/etcd" go.etcd.io/etcd/server/v3
"$BIN_DIR.partial/kube-apiserver" --version >&2
"$BIN_DIR.partial/etcd" --version | head -1 >&2

rm -rf "$BIN_DIR" && mv "$BIN_DIR.partial" "$BIN_DIR"
log "built in $(( $(date +%s) - start ))s into $BIN_DIR"
echo "$BIN_DIR"

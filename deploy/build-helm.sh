#!/usr/bin/env bash
# Builds the helm CLI from its Go module into a cache outside the repository, keyed by version:
# the README's install uses it where helm 3 is missing, and the chart's tests render with it.
# Idempotent: when the binary for this version is already cached it prints its path and exits.
#
# Usage: deploy/build-helm.sh     -> prints the path of the helm binary on stdout
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-3.22.0}"
CACHE_ROOT="${ROLLOUT_BOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rollout-bot}"
BIN_DIR="$CACHE_ROOT/helm/v$HELM_VERSION"

log() { printf '[helm] %s\n' "$*" >&2; }

if [[ -x "$BIN_DIR/helm" ]]; then
  echo "$BIN_DIR/helm"
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build helm"; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0
start=$(date +%s)
log "building helm v$HELM_VERSION from its Go module (first time only; ~2-5 min on 2 cores)"
# Build into a partial directory so an interrupted build never looks like a finished one.
rm -rf "$BIN_DIR.partial"
mkdir -p "$BIN_DIR.partial"
# Helm's own Makefile stamps the version and the Kubernetes version that `helm template` and
# `helm lint` assume (from its client-go, v0.X -> 1.X); a plain `go install` would leave 1.20.
gomod=$(go mod download -json "helm.sh/helm/v3@v$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
client_go=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")
k8s_minor=$(echo "$client_go" | cut -d. -f2)
[[ -n "$k8s_minor" ]] || { log "cannot tell helm's client-go version from $gomod"; exit 1; }
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags="$ldflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
GOBIN="$BIN_DIR.partial" go install -trimpath -ldflags "$ldflags" \
  "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2
"$BIN_DIR.partial/helm" version --short >&2
rm -rf "$BIN_DIR" && mv "$BIN_DIR.partial" "$BIN_DIR"
log "built in $(( $(date +%s) - start ))s into $BIN_DIR"
echo "$BIN_DIR/helm"

#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok, helm, and promtool for the rule tests) from Go modules into a cache
# outside the repository, keyed by version. Prints the bin directory.
# `build.sh node` builds the real node instead (build-node.sh).
#
# Everything comes from the Go module proxy: k8s.io/kubernetes is consumed
# through a wrapper module that maps each staging module (replaced by a local
# path in the upstream go.mod) to its published v0.x.y twin.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
# MEDIASTACK_KUBERNETES=min: the oldest Kubernetes the chart supports
# (MIN_KUBERNETES_VERSION, = Chart.yaml's kubeVersion) instead of the pinned one.
default_kubernetes=$KUBERNETES_VERSION
case "${MEDIASTACK_KUBERNETES:-}" in
  "" | pinned) ;;
  min) KUBERNETES_VERSION=$MIN_KUBERNETES_VERSION ;;
  *) echo "MEDIASTACK_KUBERNETES must be 'pinned' or 'min'" >&2; exit 2 ;;
esac

cache=${MEDIASTACK_CACHE:-$HOME/.cache/mediastack-operator}
if [ "${1:-}" = node ]; then exec "$here/build-node.sh"; fi
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_prom-${PROMETHEUS_VERSION}"
bin="$cache/controlplane/$key/bin"
want=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok helm promtool)

have_all() { for b in "${want[@]}"; do [ -x "$bin/$b" ] || return 1; done; }
if have_all; then echo "$bin"; exit 0; fi

mkdir -p "$bin"
work="$cache/controlplane/$key/src"
mkdir -p "$work"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0
log() { echo "controlplane: $*" >&2; }

# --- Kubernetes -----------------------------------------------------------
build_kubernetes() {
  local dir="$work/kubernetes" minor
  minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local staging="v0.${minor}.${KUBERNETES_VERSION##*.}"
  mkdir -p "$dir"
  local upstream_mod
  upstream_mod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module mediastack.io/controlplane/kubernetes"
    echo
    echo "go $(sed -n 's/^go //p' "$upstream_mod")"
    echo
    echo "require k8s.io/kubernetes ${KUBERNETES_VERSION}"
    echo
    echo "replace ("
    # Every "k8s.io/x => ./staging/src/k8s.io/x" line becomes "=> k8s.io/x v0.N.P".
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$upstream_mod"
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  log "resolving k8s.io/kubernetes ${KUBERNETES_VERSION} (staging ${staging})"
  (cd "$dir" && go mod tidy -e >/dev/null 2>&1 || true; cd "$dir" && go mod tidy)
  local v=k8s.io/component-base/version
  local ldflags="-s -w -X $v.gitVersion=${KUBERNETES_VERSION} -X $v.gitMajor=1 -X $v.gitMinor=${minor} -X $v.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=${KUBERNETES_VERSION} -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${minor}"
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl"
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
}

# --- etcd: a tiny main around etcdmain (the etcd root module has local replaces)
build_etcd() {
  local dir="$work/etcd"
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<GOMOD
module mediastack.io/controlplane/etcd

go 1.25

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
GOMOD
  cat >"$dir/main.go" <<'GO'
// Command etcd runs the etcd server from its published library module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  log "building etcd ${ETCD_VERSION}"
  (cd "$dir" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
}

# --- kwok and helm install cleanly with `go install` -------------------------
build_go_install() {
  local pkg=$1 name=$2
  log "building $name"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "$pkg"
}

# The tools other than Kubernetes are the same for both Kubernetes versions:
# reuse those of the pinned build when it exists.
shared_bin="$cache/controlplane/k8s-${default_kubernetes}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_prom-${PROMETHEUS_VERSION}/bin"
if [ "$shared_bin" != "$bin" ]; then
  for b in etcd kwok helm promtool; do
    [ -x "$bin/$b" ] || [ ! -x "$shared_bin/$b" ] || cp "$shared_bin/$b" "$bin/$b"
  done
fi
[ -x "$bin/etcd" ] || build_etcd
[ -x "$bin/kwok" ] || build_go_install "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" kwok
[ -x "$bin/helm" ] || build_go_install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" helm
# promtool checks the generated alert rules in the unit tests.
[ -x "$bin/promtool" ] || build_go_install "github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS_VERSION}" promtool
if ! { [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/kube-scheduler" ] && [ -x "$bin/kubectl" ]; }; then
  build_kubernetes
fi
have_all || { log "missing binaries in $bin"; exit 1; }
echo "$bin"

#!/usr/bin/env bash
# Builds the real node of the local cluster into a cache outside the
# repository, keyed by the pinned versions (versions.env), and prints its bin
# directory. Run as `build.sh node`.
#
# From Go modules: kubelet and kube-proxy (the control plane's k8s.io/kubernetes
# wrapper module), containerd + ctr + containerd-shim-runc-v2, the CNI plugins
# bridge/host-local/loopback/portmap, CoreDNS, kube-router (its NetworkPolicy
# firewall only) and wireguard-go. From Debian, installed when missing: runc,
# iptables, ipset, conntrack, iproute2, wireguard-tools, tcpdump,
# busybox-static, qbittorrent-nox and fail2ban (for the stand-in images), curl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${MEDIASTACK_CACHE:-$HOME/.cache/mediastack-operator}
key="k8s-${KUBERNETES_VERSION}_containerd-${CONTAINERD_VERSION}_cni-${CNI_PLUGINS_VERSION}_coredns-${COREDNS_VERSION}_kube-router-${KUBE_ROUTER_VERSION}_wg-${WIREGUARD_GO_VERSION}"
bin="$cache/node/$key/bin"
work="$cache/node/$key/src"
want=(kubelet kube-proxy containerd ctr containerd-shim-runc-v2 bridge host-local loopback portmap coredns kube-router wireguard-go)
debs=(runc:runc iptables:iptables ipset:ipset conntrack:conntrack ip:iproute2 wg:wireguard-tools
  tcpdump:tcpdump busybox:busybox-static qbittorrent-nox:qbittorrent-nox python3:python3
  fail2ban-server:fail2ban curl:curl)
log() { echo "node: $*" >&2; }

missing=()
for d in "${debs[@]}"; do command -v "${d%%:*}" >/dev/null || missing+=("${d#*:}"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { log "install: ${missing[*]}"; exit 1; }
  log "installing Debian packages: ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >&2
fi

have_all() { for b in "${want[@]}"; do [ -x "$bin/$b" ] || return 1; done; }
if have_all; then echo "$bin"; exit 0; fi
mkdir -p "$bin" "$work"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

# kubelet and kube-proxy: the control plane's wrapper module (same staging
# replaces), importing the two commands instead.
build_kubernetes() {
  local cp dir="$work/kubernetes" minor
  cp=$("$here/build.sh") # the control plane first: its wrapper go.mod is reused
  minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  mkdir -p "$dir"
  cp "$cp/../src/kubernetes/go.mod" "$dir/go.mod"
  sed -i 's#^module .*#module mediastack.io/node/kubernetes#' "$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  (cd "$dir" && go mod tidy)
  local v=k8s.io/component-base/version
  local ldflags="-s -w -X $v.gitVersion=${KUBERNETES_VERSION} -X $v.gitMajor=1 -X $v.gitMinor=${minor} -X $v.gitTreeState=clean"
  log "building kubelet, kube-proxy ${KUBERNETES_VERSION}"
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
}

goinstall() { # PKG@VERSION [TAGS]
  log "building $1"
  GOBIN="$bin" go install -trimpath -tags "${2:-}" -ldflags "-s -w" "$1"
}

for c in containerd ctr containerd-shim-runc-v2; do
  [ -x "$bin/$c" ] || goinstall "github.com/containerd/containerd/v2/cmd/$c@${CONTAINERD_VERSION}" "no_btrfs no_devmapper no_zfs"
done
for p in main/bridge main/loopback ipam/host-local meta/portmap; do
  [ -x "$bin/${p#*/}" ] || goinstall "github.com/containernetworking/plugins/plugins/$p@${CNI_PLUGINS_VERSION}"
done
[ -x "$bin/coredns" ] || goinstall "github.com/coredns/coredns@${COREDNS_VERSION}"
[ -x "$bin/kube-router" ] || goinstall "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@${KUBE_ROUTER_VERSION}"
[ -x "$bin/wireguard-go" ] || { goinstall "golang.zx2c4.com/wireguard@${WIREGUARD_GO_VERSION}" && mv "$bin/wireguard" "$bin/wireguard-go"; }
{ [ -x "$bin/kubelet" ] && [ -x "$bin/kube-proxy" ]; } || build_kubernetes
have_all || { log "missing binaries in $bin"; exit 1; }
echo "$bin"

#!/usr/bin/env bash
# The main job: a running, reporting media stack.
#
#   e2e/up.sh        start the local control plane (unless KUBECONFIG is set),
#                    install the CRDs, run the operator, apply the example
#                    stack and show its status
#   e2e/up.sh down   stop the operator and the local control plane
#
# With KUBECONFIG set, the cluster it points at is used and left running;
# only the operator process started here is stopped by `down`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${MEDIASTACK_CACHE:-$HOME/.cache/mediastack-operator}
state="$cache/up"
mkdir -p "$state"
cd "$repo"

if [ "${1:-}" = down ]; then
  if [ -f "$state/operator.pid" ]; then kill "$(cat "$state/operator.pid")" 2>/dev/null || true; rm -f "$state/operator.pid"; fi
  if [ -f "$state/local" ]; then e2e/controlplane/cluster.sh down "$state/cluster"; rm -f "$state/local"; fi
  echo "stopped"; exit 0
fi

bin=$(e2e/controlplane/build.sh)
export PATH="$bin:$PATH"
if [ -z "${KUBECONFIG:-}" ]; then
  if ! e2e/controlplane/cluster.sh status "$state/cluster" >/dev/null 2>&1; then
    e2e/controlplane/cluster.sh up "$state/cluster"
  fi
  touch "$state/local"
  export KUBECONFIG="$state/cluster/kubeconfig"
fi

echo "==> CRDs"
kubectl apply --server-side --force-conflicts -f crds/
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null

echo "==> operator"
cargo build -q -p mediastack-operator --locked
if [ -f "$state/operator.pid" ]; then kill "$(cat "$state/operator.pid")" 2>/dev/null || true; fi
nohup target/debug/mediastack-operator run --listen 127.0.0.1:18080 >"$state/operator.log" 2>&1 &
echo $! >"$state/operator.pid"
for _ in $(seq 60); do curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 1; done
curl -sf http://127.0.0.1:18080/readyz >/dev/null || { tail -20 "$state/operator.log"; exit 1; }

echo "==> example stack (namespace media)"
kubectl create namespace media --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# Placeholder WireGuard keys: replace them with your provider's for a real tunnel.
kubectl -n media create secret generic mullvad-wireguard --from-literal=privateKey=REPLACE_ME \
  --from-literal=addresses=10.64.0.2/32 --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply --server-side -f examples/vpngateway.yaml -f examples/mediastack.yaml -f examples/ingressroute.yaml
kubectl -n media wait --for=condition=Ready mediastack/home --timeout=180s

echo "==> status"
kubectl -n media get media
kubectl -n media get mediastack home -o jsonpath='{range .status.apps[*]}{.name}{"\t"}{.ready}{"\t"}{.urls[0]}{"\n"}{end}'
echo
echo "KUBECONFIG=$KUBECONFIG   operator log: $state/operator.log   stop: e2e/up.sh down"

#!/usr/bin/env bash
# Runs the cluster tests on kind with the operator installed from the Helm
# chart, the way a user runs it: kind cluster (kind-config.yaml) -> image built
# from the Dockerfile and loaded into kind -> Traefik and prometheus-operator
# CRDs -> the chart -> the examples in namespace media -> e2e/test.sh against
# that cluster, with the chart's operator (MEDIASTACK_E2E_OPERATOR=external).
#
# Needs docker (with a running engine), kind, helm and kubectl. Written where
# no Docker engine was available, so it has not been run; the local control
# plane (e2e/test.sh) is what runs everywhere.
#
# Env: KIND_CLUSTER (default mediastack; an existing cluster is reused),
# MEDIASTACK_SHARED (default ../shared), KUBECONFIG_KIND (where the kubeconfig goes).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
cluster=${KIND_CLUSTER:-mediastack}
shared=${MEDIASTACK_SHARED:-$repo/../shared}
step() { echo; echo "==> $*"; }

for tool in docker kind helm kubectl; do
  command -v "$tool" >/dev/null || { echo "$tool is required"; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "docker cannot reach an engine"; exit 1; }
# kind-config.yaml mounts /srv/data into the node (the examples' hostPath).
[ -d /srv/data ] || { echo "create the data directory first: sudo mkdir -p /srv/data && sudo chown $(id -u):$(id -g) /srv/data"; exit 1; }

step "kind cluster $cluster"
if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --config kind-config.yaml
fi
export KUBECONFIG=${KUBECONFIG_KIND:-$HOME/.kube/kind-$cluster}
kind export kubeconfig --name "$cluster" --kubeconfig "$KUBECONFIG"

step "operator image"
docker build -t mediastack-operator:dev .
# Tag by content, so a rebuilt image rolls the Deployment.
tag=$(docker image inspect -f '{{.Id}}' mediastack-operator:dev | sed 's/^sha256://' | cut -c1-12)
docker tag mediastack-operator:dev "mediastack-operator:$tag"
kind load docker-image "mediastack-operator:$tag" --name "$cluster"

step "CRDs (Traefik, prometheus-operator, ours)"
# Server-side: some of these are too large for client-side apply's annotation.
# Ours come with the chart (templates/crds.yaml, upgraded with it).
kubectl apply --server-side --force-conflicts \
  -f "$shared/thirdparty/crds/traefik-crds.yaml" \
  -f "$shared/thirdparty/crds/monitoring-crds.yaml"
kubectl wait --for=condition=Established crd --all --timeout=60s

step "chart"
helm upgrade --install mediastack-operator charts/mediastack-operator \
  --namespace mediastack-system --create-namespace \
  --set image.repository=mediastack-operator --set image.tag="$tag" \
  --set policy.admission.enabled=false \
  --wait --timeout 5m
kubectl wait --for=condition=Established crd --all --timeout=60s
# The chart's own test: its pod asks the operator for /readyz.
helm test mediastack-operator --namespace mediastack-system --timeout 2m
# (The tests check the operator's own policy checks, which the admission
# policy would pre-empt; e2e/tests/chart.rs tests the admission policy.)

step "examples (namespace media)"
kubectl apply --server-side -f examples/stack-complete.yaml

step "cluster tests"
# One test at a time: without the local audit log, the no-op resync test
# counts writes with the API server's cluster-wide counters.
E2E_THREADS=1 MEDIASTACK_E2E_CLUSTER=existing MEDIASTACK_E2E_OPERATOR=external e2e/test.sh

#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and snapshot tests, then the
# cluster tests against a real API server.
#
# Without KUBECONFIG this builds (once, cached outside the repo) and starts the
# local control plane with the real node (cluster.sh --real-node; set
# MEDIASTACK_REAL_NODE=0 for the KWOK node alone), runs the cluster tests
# against it and tears it down.
# With MEDIASTACK_E2E_CLUSTER=existing the cluster tests use the cluster that
# KUBECONFIG points at (kind: see e2e/kind.sh).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export CARGO_TERM_COLOR=never
start=$SECONDS
step() { echo; echo "==> $* ($((SECONDS - start))s)"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
command -v go >/dev/null || { echo "go is required to build the local control plane"; exit 1; }
rustup component add clippy rustfmt >/dev/null 2>&1 || true

step "test tools: local control plane and promtool (cached build), fail2ban-regex"
bin=$("$repo/e2e/controlplane/build.sh")
export PATH="$bin:$PATH"
# The oldest supported Kubernetes (MIN_KUBERNETES_VERSION, Chart.yaml's
# kubeVersion) for a second run of API-level cluster tests (see below);
# MEDIASTACK_MIN_KUBERNETES=0 skips that run.
if [ "${MEDIASTACK_E2E_CLUSTER:-local}" != existing ] && [ "${MEDIASTACK_MIN_KUBERNETES:-1}" != 0 ]; then
  MEDIASTACK_KUBERNETES=min "$repo/e2e/controlplane/build.sh" >/dev/null
fi
if ! command -v fail2ban-regex >/dev/null; then
  # Debian's fail2ban ships fail2ban-regex, which checks the generated filters.
  command -v apt-get >/dev/null || { echo "install fail2ban (for fail2ban-regex)"; exit 1; }
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fail2ban) >/dev/null
fi
# The tests that use these tools fail instead of skipping when they are missing.
export MEDIASTACK_REQUIRE_TOOLS=1

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The chart (e2e/tests/chart.rs checks it further).
helm lint --strict charts/mediastack-operator
# The release and kind workflows (actionlint, built once and cached).
"$repo/e2e/lint-workflows.sh"

step "unit, snapshot and render tests"
cargo test --workspace --exclude mediastack-e2e --locked

step "operator binary for the cluster tests"
cargo build -p mediastack-operator --locked
export MEDIASTACK_OPERATOR_BIN="$repo/target/debug/mediastack-operator"

run_cluster_tests() {
  if [ "${MEDIASTACK_E2E_OPERATOR:-}" != external ]; then
    # The operators the tests start run as the chart's ServiceAccount, with
    # exactly the chart's RBAC: a missing rule fails a test.
    kubectl create namespace mediastack-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    # --kube-version: a helm built with `go install` assumes Kubernetes 1.20,
    # below the chart's kubeVersion; this is the cluster's.
    local kube_version
    kube_version=$(kubectl version -o json | sed -n 's/.*"gitVersion": *"\(v[0-9.]*\).*/\1/p' | tail -1)
    helm template mediastack-operator charts/mediastack-operator -n mediastack-system --kube-version "$kube_version" \
      --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml |
      kubectl apply --server-side -f - >/dev/null
    export MEDIASTACK_OPERATOR_AS=system:serviceaccount:mediastack-system:mediastack-operator
  fi
  # Arguments: which test targets (e.g. --test chart); default all but
  # restart, which restarts the API server and runs alone (below).
  if [ $# = 0 ]; then
    local f name
    for f in e2e/tests/*.rs; do
      name=$(basename "$f" .rs)
      [ "$name" = restart ] || set -- "$@" --test "$name"
    done
  fi
  cargo test -p mediastack-e2e --locked "$@" -- --test-threads="${E2E_THREADS:-4}"
}

if [ "${MEDIASTACK_E2E_CLUSTER:-local}" = existing ]; then
  step "cluster tests against \$KUBECONFIG"
  run_cluster_tests
else
  # With the real node (real containers and packets, e2e/tests/realnode.rs)
  # unless MEDIASTACK_REAL_NODE=0; it needs root.
  node_flag=--real-node
  if [ "${MEDIASTACK_REAL_NODE:-1}" = 0 ]; then node_flag=""; fi
  step "cluster tests against the local control plane${node_flag:+ with the real node}"
  export -f run_cluster_tests
  "$repo/e2e/controlplane/cluster.sh" exec $node_flag -- bash -c run_cluster_tests
  # It kills and restarts the API server: a control plane of its own.
  step "API-server restart test against a local control plane of its own"
  "$repo/e2e/controlplane/cluster.sh" exec -- bash -c 'run_cluster_tests --test restart'
  if [ "${MEDIASTACK_MIN_KUBERNETES:-1}" != 0 ]; then
    # The test files that reach what differs between Kubernetes versions:
    # the chart (CRDs, RBAC, the ValidatingAdmissionPolicy), the CRDs' CEL
    # rules (ip()/cidr(): killswitch, hostile), native sidecars and
    # ServiceCIDR discovery (vpn), server-side apply (foundation, gitops).
    # MEDIASTACK_MIN_KUBERNETES=all: every cluster test file but the real
    # node's (which needs the pinned kubelet); about 8 more minutes.
    # shellcheck source=controlplane/versions.env
    min_version=$(. "$repo/e2e/controlplane/versions.env" && echo "$MIN_KUBERNETES_VERSION")
    targets=()
    if [ "${MEDIASTACK_MIN_KUBERNETES:-1}" = all ]; then
      for f in "$repo"/e2e/tests/*.rs; do
        name=$(basename "$f" .rs)
        [ "$name" = realnode ] || [ "$name" = restart ] || targets+=(--test "$name")
      done
    else
      for name in chart foundation gitops hostile killswitch vpn; do targets+=(--test "$name"); done
    fi
    step "API-level cluster tests against the minimum Kubernetes ${min_version}"
    MEDIASTACK_KUBERNETES=min "$repo/e2e/controlplane/cluster.sh" exec -- \
      bash -c 'run_cluster_tests "$@"' _ "${targets[@]}"
  fi
fi
step "all tests passed"

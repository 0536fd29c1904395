#!/usr/bin/env bash
# Checks the GitHub Actions workflows (.github/workflows) with actionlint: YAML
# syntax, the workflow schema, expressions and action inputs. The workflows
# themselves cannot run here (no Docker engine, no registry); this is the check
# that can. actionlint is built from its Go module once and cached outside the
# repository.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=v1.7.12
cache=${MEDIASTACK_CACHE:-$HOME/.cache/mediastack-operator}
bin="$cache/tools/actionlint-$version"
if [ ! -x "$bin/actionlint" ]; then
  mkdir -p "$bin"
  GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="$bin" \
    go install -trimpath -ldflags "-s -w" "github.com/rhysd/actionlint/cmd/actionlint@$version" >&2
fi
cd "$repo"
# -shellcheck= : run-step scripts are checked only when shellcheck is installed.
"$bin/actionlint" -shellcheck= .github/workflows/*.yml
echo "actionlint: $(ls .github/workflows/*.yml | wc -l) workflow(s) OK"

# The release step that points the packaged chart at the pushed image works on
# the chart as it is (checked on a copy, rendered with helm when it is on PATH).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r charts/mediastack-operator "$tmp/chart"
e2e/release-values.sh ghcr.io/example/mediastack-operator "$tmp/chart" >/dev/null
if command -v helm >/dev/null; then
  # --kube-version: a helm built with `go install` assumes Kubernetes 1.20,
  # below the chart's kubeVersion.
  # shellcheck source=controlplane/versions.env
  kube_version=$(. e2e/controlplane/versions.env && echo "$KUBERNETES_VERSION")
  helm template x "$tmp/chart" --kube-version "$kube_version" --show-only templates/deployment.yaml |
    grep -q 'image: "\{0,1\}ghcr.io/example/mediastack-operator:' || {
    echo "release-values: the rendered Deployment does not use the released image" >&2
    exit 1
  }
fi
echo "release-values: packaged chart defaults to the released image"

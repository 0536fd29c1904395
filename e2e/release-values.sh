#!/usr/bin/env bash
# Points the chart's default image at the image a release pushed:
#   e2e/release-values.sh IMAGE_REPOSITORY [CHART_DIR]
# The release workflow runs this before `helm package`, so a chart installed
# from the OCI registry pulls the operator image published with it (the tag
# defaults to the chart's appVersion). Fails when values.yaml no longer has
# the line it rewrites, so the workflow cannot publish a chart that still
# points at the local build name.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${1:?usage: release-values.sh IMAGE_REPOSITORY [CHART_DIR]}
chart=${2:-$repo/charts/mediastack-operator}
values="$chart/values.yaml"
pattern='^  repository: mediastack-operator$'
[ "$(grep -c "$pattern" "$values")" = 1 ] || {
  echo "release-values: $values has no single line matching '$pattern'" >&2
  exit 1
}
sed -i "s|$pattern|  repository: $image|" "$values"
grep -q "^  repository: $image\$" "$values"
echo "release-values: image.repository = $image"

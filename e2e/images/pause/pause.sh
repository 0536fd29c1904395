#!/bin/sh
# Stand-in for registry.k8s.io/pause: holds the pod's namespaces, exits on TERM/INT.
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done

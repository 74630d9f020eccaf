#!/usr/bin/env bash
# Builds kube-apiserver once per machine and version (hack/build-kubernetes.sh)
# and prints the binary's path.
exec "$(dirname "$0")/build-kubernetes.sh" kube-apiserver

#!/usr/bin/env bash
# Builds one Kubernetes component (kube-apiserver or kubelet) from the Go
# module proxy once per machine and version, into a cache outside the
# repository, and prints the binary's path. Both come from the one module
# tools/kubernetes, so that the product's go.mod never depends on
# k8s.io/kubernetes. Cold on 2 cores: kube-apiserver 4 to 8 minutes, the
# kubelet about 1.5 more.
set -euo pipefail
version=v1.37.2
name=${1:?usage: build-kubernetes.sh kube-apiserver|kubelet}
case $name in kube-apiserver | kubelet) ;; *) echo "build-kubernetes: no component $name" >&2; exit 2 ;; esac
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${KMCP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubernetes-mcp-server}
out=$cache/bin/$name-$version
if [[ -x $out ]]; then echo "$out"; exit 0; fi
mkdir -p "$cache/bin"
echo "building $name $version (once per machine)..." >&2
minor=${version#v1.}; minor=${minor%%.*}
# Without the version the component reports v0.0.0-master.
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
(cd "$top/tools/kubernetes" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "./$name")
mv "$out.tmp" "$out"
echo "$out"

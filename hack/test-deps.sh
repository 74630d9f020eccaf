#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (root): the
# Debian packages below when missing (runsc is gVisor, for the container
# sandbox's gvisor isolation tier), and the kube-apiserver, plugin (native
# and WebAssembly), image and staticcheck builds (cached outside the
# repository, so only the first run pays for them).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

"$top/hack/install-packages.sh" test-deps git=git etcd=etcd-server containerd=containerd ctr=containerd runc=runc runsc=runsc \
	busybox=busybox-static kubectx=kubectx mmdebstrap=mmdebstrap nsenter=util-linux pgrep=procps pkill=procps \
	/usr/bin/rustc=rustc /usr/lib/rustlib/wasm32-wasi/lib=libstd-rust-dev-wasm32 wasm-ld=lld \
	podman=podman podman-compose=podman-compose docker-compose=docker-compose \
	/usr/lib/cni/bridge=containernetworking-plugins ip=iproute2
# Debian's packages may start services; the tests run their own on private sockets.
"$top/hack/build-kube-apiserver.sh" >/dev/null
"$top/hack/build-kubernetes.sh" kubelet >/dev/null
"$top/hack/build-plugins.sh" >/dev/null
"$top/hack/build-wasm-plugins.sh" >/dev/null
"$top/hack/build-image.sh" >/dev/null
"$top/hack/build-staticcheck.sh" >/dev/null
# The MCP Inspector's CLI (0.15.0 runs on Node 20), for the end-to-end tests.
cache=${KMCP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubernetes-mcp-server}
if [[ ! -x $cache/npm/node_modules/.bin/mcp-inspector ]]; then
	command -v npm >/dev/null || { echo "test-deps: npm is needed for the MCP Inspector" >&2; exit 1; }
	mkdir -p "$cache/npm"
	npm install --prefix "$cache/npm" --no-audit --no-fund --loglevel=error @modelcontextprotocol/inspector@0.15.0 >&2
fi

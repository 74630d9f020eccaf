#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (root): the
# Debian packages below when missing, and the kube-apiserver build (cached
# outside the repository, so only the first run pays for it).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

# command -> Debian package
declare -A packages=(
	[etcd]=etcd-server
	[containerd]=containerd
	[ctr]=containerd
	[runc]=runc
	[busybox]=busybox-static
	[kubectx]=kubectx
)
missing=()
for cmd in "${!packages[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
if ((${#missing[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "test-deps: need root to install: ${missing[*]}" >&2
		exit 1
	fi
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	echo "test-deps: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's packages may start services; the tests run their own on private sockets.
"$top/hack/build-kube-apiserver.sh" >/dev/null
"$top/hack/build-plugins.sh" >/dev/null

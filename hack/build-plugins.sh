#!/usr/bin/env bash
# Builds real kubectl plugins from the Go module proxy once per machine and
# version, into a cache outside the repository, and prints the folder that
# holds them (named as krew installs them, ready to put on PATH).
#
# Each build is kept as plugin-builds/<name>@<version>; plugins/<name> is a
# hard link to it, so a version bump rebuilds and the folder holds regular files.
set -euo pipefail
cache=${KMCP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubernetes-mcp-server}
plugins=$cache/plugins
builds=$cache/plugin-builds

# installed name -> package@version
declare -A modules=(
	[kubectl-krew]=sigs.k8s.io/krew/cmd/krew@v0.4.3
	[kubectl-stern]=github.com/stern/stern@v1.33.0
	[kubectl-validate]=sigs.k8s.io/kubectl-validate@v0.0.4
	[kubectl-score]=github.com/zegl/kube-score/cmd/kube-score@v1.20.0
)
# installed name -> Debian script (package kubectx)
declare -A links=(
	[kubectl-ctx]=/usr/bin/kubectx
	[kubectl-ns]=/usr/bin/kubens
)

mkdir -p "$plugins" "$builds"
# Concurrent test runs share the cache: one builds, the others wait.
exec 9>"$cache/.plugins.lock"
flock 9

for cmd in kubectx kubens; do
	if ! command -v "$cmd" >/dev/null 2>&1; then
		if [[ $(id -u) != 0 ]]; then
			echo "build-plugins: need root to install kubectx" >&2
			exit 1
		fi
		echo "build-plugins: installing kubectx" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubectx >/dev/null
		break
	fi
done

for name in "${!modules[@]}"; do
	mod=${modules[$name]}
	build=$builds/$name@${mod##*@}
	if [[ $plugins/$name -ef $build ]]; then continue; fi
	if [[ ! -x $build ]]; then
		echo "build-plugins: building $mod (once per machine, a few minutes)..." >&2
		tmp=$(mktemp -d "$builds/.tmp.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		# go install ignores the current module for pkg@version; GOWORK=off
		# keeps a go.work above the caller out of it too.
		(cd "$tmp" && GOWORK=off CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags=-s "$mod")
		bin=("$tmp"/*) # go install names it after the package; it is the only file
		mv "${bin[0]}" "$build"
		rm -rf "$tmp"
		trap - EXIT
	fi
	ln -f "$build" "$plugins/.$name.tmp"
	mv -f "$plugins/.$name.tmp" "$plugins/$name"
done

for name in "${!links[@]}"; do
	target=${links[$name]}
	if [[ $(readlink "$plugins/$name" 2>/dev/null) == "$target" ]]; then continue; fi
	ln -sfn "$target" "$plugins/.$name.tmp"
	mv -fT "$plugins/.$name.tmp" "$plugins/$name"
done

echo "$plugins"

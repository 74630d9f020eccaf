#!/usr/bin/env bash
# Builds the WebAssembly kubectl plugins (GOOS=wasip1 GOARCH=wasm) once per
# machine and version, into a cache outside the repository, and prints the
# folder that holds them, named kubectl-<name>.wasm as the wasm sandbox
# finds them on a plugin path:
#
#  - this repository's examples (examples/wasm/*, and the pure-computation
#    example examples/plugins/manifest-lint, which builds unchanged), each
#    kept as wasm-plugin-builds/<name>@<hash of the Go version, go.mod,
#    go.sum and the sources of every package of this module it builds from>;
#  - real third-party plugins from the Go module proxy, each kept as
#    wasm-plugin-builds/<name>@<module version>-<Go version>.
#
# wasm-plugins/<name> is a hard link to its build, so a new version or an
# edited example rebuilds and the folder holds regular files. A cold run
# takes minutes (kube-score compiles for about a minute); a warm one, well
# under a second. Environment: KMCP_CACHE (the build cache, as
# hack/build-plugins.sh's).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${KMCP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubernetes-mcp-server}
plugins=$cache/wasm-plugins
builds=$cache/wasm-plugin-builds

# installed name -> package directory in this repository
declare -A examples=(
	[kubectl-manifest_lint.wasm]=examples/plugins/manifest-lint
)
for dir in "$top"/examples/wasm/*/; do
	dir=${dir%/}
	[[ -f $dir/main.go ]] || continue
	examples[kubectl-$(basename "$dir" | tr - _).wasm]=${dir#"$top"/}
done
# installed name -> package@version, from the Go module proxy: only plugins
# that build for wasip1 and do something useful there, with no socket and
# no file but the standard streams. Tried and left out (2026-12):
# kubeconform v0.8.0 builds and runs, but downloads its schemas (useful only
# with a local -schema-location folder); stern v1.33.0 does not build (its
# survey/terminal dependency needs termios); kustomize v5.8.3 needs Go 1.27;
# kubectl-neat, pluto, kubesec, kube-linter, kubectx/kubens, kubectl-tree,
# ketall and kubepug are not served by the module proxy here.
declare -A modules=(
	[kubectl-score.wasm]=github.com/zegl/kube-score/cmd/kube-score@v1.20.0
)

export GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOWORK=off
go_version=$(go env GOVERSION)
modcache=$(go env GOMODCACHE)

mkdir -p "$plugins" "$builds"
# Concurrent test runs share the cache: one builds, the others wait.
exec 9>"$cache/.wasm-plugins.lock"
flock 9

tmp=
trap 'if [[ -n $tmp ]]; then rm -rf "$tmp"; fi' EXIT

install_plugin() { # name build
	[[ $plugins/$1 -ef $2 ]] && return
	ln -f "$2" "$plugins/.$1.tmp"
	mv -f "$plugins/.$1.tmp" "$plugins/$1"
}

for name in "${!examples[@]}"; do
	pkg=${examples[$name]}
	# Every package of this module that pkg builds from (wasmguest, the
	# ABI, ...), so that an edit to any of them rebuilds it.
	key=$( (
		cd "$top"
		echo "$go_version"
		cat go.mod go.sum
		go list -deps -f '{{if and .Module .Module.Main}}{{range .GoFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}{{end}}' "./$pkg" |
			LC_ALL=C sort | xargs sha256sum | sed "s|  $top/|  |"
	) | sha256sum | cut -c1-16)
	build=$builds/$name@$key
	if [[ ! -f $build ]]; then
		echo "build-wasm-plugins: building $name from $pkg" >&2
		(cd "$top" && go build -trimpath -ldflags=-s -o "$build.tmp.$$" "./$pkg")
		mv "$build.tmp.$$" "$build"
		# Older builds of this example (a running server keeps its hard link).
		find "$builds" -maxdepth 1 -name "$name@*" ! -name '*.tmp.*' ! -name "${build##*/}" -delete
	fi
	install_plugin "$name" "$build"
done

for name in "${!modules[@]}"; do
	mod=${modules[$name]}
	build=$builds/$name@${mod##*@}-$go_version
	if [[ ! -f $build ]]; then
		echo "build-wasm-plugins: building $mod for wasip1 (once per machine, a few minutes)..." >&2
		tmp=$(mktemp -d "$builds/.tmp.XXXXXX")
		# go install ignores the current module for pkg@version. It refuses
		# GOBIN for another platform, and installs into $GOPATH/bin/wasip1_wasm
		# instead: a GOPATH of our own, over the shared module cache.
		(cd "$tmp" && GOPATH="$tmp/gopath" GOMODCACHE="$modcache" go install -trimpath -ldflags=-s "$mod")
		bin=("$tmp"/gopath/bin/wasip1_wasm/*) # named after the package; the only file
		mv "${bin[0]}" "$build"
		chmod -R u+w "$tmp"
		rm -rf "$tmp"
		tmp=
	fi
	install_plugin "$name" "$build"
done

# Plugins no longer built (an example removed, a module dropped).
for file in "$plugins"/*; do
	name=${file##*/}
	if [[ -f $file && -z ${examples[$name]:-} && -z ${modules[$name]:-} ]]; then rm -f "$file"; fi
done

echo "$plugins"

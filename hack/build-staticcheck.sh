#!/usr/bin/env bash
# Installs staticcheck from the Go module proxy once per machine and version,
# into a cache outside the repository, and prints the binary's path.
set -euo pipefail
# honnef.co/go/tools v0.8.2 is staticcheck 2026.2.2.
version=v0.8.2
cache=${KMCP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubernetes-mcp-server}
# Keyed by Go version too: staticcheck reads the packages of the Go it was
# built with.
out=$cache/bin/staticcheck-$version-$(go env GOVERSION)
if [[ -x $out ]]; then echo "$out"; exit 0; fi
mkdir -p "$cache/bin"
echo "build-staticcheck: installing staticcheck $version (once per machine, about a minute)..." >&2
tmp=$(mktemp -d "$cache/bin/.staticcheck.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# go install ignores the current module for pkg@version; GOWORK=off keeps a
# go.work above the caller out of it too.
(cd "$tmp" && GOWORK=off CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath "honnef.co/go/tools/cmd/staticcheck@$version")
mv "$tmp/staticcheck" "$out"
echo "$out"

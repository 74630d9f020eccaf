#!/usr/bin/env bash
# Builds the container image of the Dockerfile with podman, offline, and
# prints its name (localhost/kubernetes-mcp-server:<key>). No image registry
# is reachable here, so the Dockerfile's base images are local ones, built
# once per machine and kept in podman's storage under tags that name what
# went into them:
#
#  - localhost/kmcp-debian:bookworm-<hash>: Debian bookworm's minbase (what
#    debian:bookworm-slim holds: Essential and required packages, no manuals,
#    documentation or translations), from mmdebstrap and the mirrors this
#    machine's apt uses, `podman import`ed; the runtime stage's base;
#  - localhost/kmcp-go:<go version>-bookworm-<hash>: the same with
#    ca-certificates and this machine's Go toolchain (`go env GOROOT`, at
#    /usr/local/go), GOPATH=/go as in the golang images; the build stage's.
#
# The build runs with --network none: the Go module proxy is not reachable
# from a build container. The host's module cache (`go env GOMODCACHE`,
# filled first with `go mod download` and, for kube-score and krew, the
# modules their `go install` needs) is mounted read-only and serves as the
# module proxy (GOPROXY=file://.../cache/download: GOPROXY=off fails `go
# install pkg@version`, which asks the proxy whether the module is
# deprecated), with GOSUMDB=off (go.sum still checks every module; the host
# checked the others with the checksum database when it downloaded them);
# the host's build cache (`go env GOCACHE`) is mounted read-write, so a cold
# build compiles little of what the host compiled already.
#
# The image is keyed by a hash of what goes into it (the Dockerfile,
# .dockerignore, the files of the build context, this script, the base
# images and the version): an image of that key in podman's storage is
# reused at once; otherwise podman builds, and removes older keys (unless
# a container still uses one) and the build stage's images. The image is
# tagged localhost/kubernetes-mcp-server:latest too, the image
# deploy/docker-compose.yml names (`podman-compose up --no-build`).
#
# podman on this machine kind (Debian 12's podman 4.3.1 with buildah 1.28,
# as root): `podman info` works as installed, nothing to configure. Storage
# is overlay on ext4 (native overlay diff, no fuse-overlayfs needed), the
# cgroup manager cgroupfs (cgroup v1 hybrid, no systemd session), networks
# through CNI (containernetworking-plugins) with port publishing on the
# bridge; no uidmap (root, no user namespace). `podman build --format docker`
# keeps the HEALTHCHECK (the OCI format drops it). `podman run` needs
# `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024` here: its defaults
# exceed the machine's hard limits.
#
# Environment: KMCP_CACHE (where mmdebstrap's tarballs are made, as the
# other hack/build-*.sh), KMCP_IMAGE_VERSION (the server's version, -X
# main.version; default "local", so that a test can tell it from the
# binary's own default "dev").
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${KMCP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubernetes-mcp-server}
# Bump to rebuild the base images on every machine after changing how.
base_version=1
suite=bookworm
version=${KMCP_IMAGE_VERSION:-local}
name=localhost/kubernetes-mcp-server

say() { echo "build-container-image: $*" >&2; }

if [[ $(id -u) != 0 ]]; then
	say "need root (podman's storage here is root's, and mmdebstrap writes a root-owned tree)"
	exit 1
fi
"$top/hack/install-packages.sh" build-container-image podman=podman mmdebstrap=mmdebstrap
mkdir -p "$cache"
# Concurrent test runs share podman's storage: one builds, the others wait.
exec 9>"$cache/.container-image.lock"
flock 9

tmp=
trap 'if [[ -n $tmp ]]; then rm -rf "$tmp"; fi' EXIT

# debian_sources: the machine's Debian apt entries for $suite.
source "$top/hack/debian-sources.sh"
sources=$(debian_sources)
[[ -n $sources ]] || sources="deb http://deb.debian.org/debian $suite main"

# mmdebstrap ARGS... TAG [podman import --change ...]: a Debian root as a
# local image TAG, unless podman has it.
debian_image() {
	local tag=$1 args=() changes=()
	shift
	while (($#)) && [[ $1 != -- ]]; do args+=("$1"); shift; done
	[[ ${1:-} == -- ]] && shift
	for c in "$@"; do changes+=(--change "$c"); done
	if podman image exists "$tag"; then return; fi
	say "building the base image $tag (once per machine)..."
	tmp=$(mktemp -d "$cache/.container-base.XXXXXX")
	printf '%s\n' "$sources" >"$tmp/sources.list"
	# merged-usr, as bookworm's images are; no manuals, documentation (but
	# the copyright files) or translations, as in debian:bookworm-slim.
	mmdebstrap --quiet --variant=minbase \
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/lintian/*' \
		--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
		--customize-hook='printf "" >"$1/etc/resolv.conf"; printf "" >"$1/etc/hostname"' \
		"${args[@]}" "$suite" "$tmp/root.tar" "$tmp/sources.list" >&2
	podman import --quiet "${changes[@]}" "$tmp/root.tar" "$tag" >/dev/null
	rm -rf "$tmp"
	tmp=
}

key=$(printf '%s\n' "$base_version" "$suite" "$sources" | sha256sum | cut -c1-12)
runtime_image=localhost/kmcp-debian:$suite-$key
debian_image "$runtime_image" -- 'CMD ["/bin/bash"]'

goroot=$(go env GOROOT)
go_version=$(go env GOVERSION)
go_image=localhost/kmcp-go:$go_version-$suite-$key
debian_image "$go_image" --include=ca-certificates \
	--customize-hook="mkdir -p \"\$1/go\" && cp -a '$goroot' \"\$1/usr/local/go\"" \
	-- 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	'ENV GOPATH=/go' 'ENV GOTOOLCHAIN=local' 'WORKDIR /go' 'CMD ["/bin/bash"]'

# The image's key: everything the build reads. Files the .dockerignore
# leaves out of the context may be hashed too (an extra build, mostly from
# the layer cache), never the other way round: the patterns below are a
# subset of the .dockerignore's.
context_files() {
	if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -C "$top" ls-files -z --cached --others --exclude-standard
	else
		(cd "$top" && find . -path ./.git -prune -o -type f -printf '%P\0')
	fi | LC_ALL=C sort -zu | while IFS= read -r -d '' f; do
		case $f in
		*_test.go | */testdata/* | *.md | .git/* | .ci/* | bench/* | tools/* | bin/*) continue ;;
		deploy/image/*) ;;
		deploy/*) continue ;;
		esac
		# Not a file deleted but still in git's index.
		if [[ -f $top/$f ]]; then printf '%s\0' "$f"; fi
	done
}
image_key=$(
	{
		printf '%s\n' "$version" "$(podman image inspect --format '{{.Id}}' "$go_image" "$runtime_image")"
		sha256sum "$0"
		(cd "$top" && context_files | xargs -0r sha256sum)
	} | sha256sum | cut -c1-16
)
image=$name:$image_key
if podman image exists "$image"; then
	podman tag "$image" "$name:latest"
	echo "$image"
	exit 0
fi

# The modules the build needs, in the host's module cache (a no-op once
# they are there; the Go module proxy is reached only for what is missing).
modcache=$(go env GOMODCACHE)
gocache=$(go env GOCACHE)
(cd "$top" && GOWORK=off GOFLAGS=-mod=readonly go mod download)
tmp=$(mktemp -d "$cache/.container-mods.XXXXXX")
mkdir -p "$tmp/gopath"
# go install -n loads the packages (downloading their modules) and builds
# nothing. Keep the versions in step with the Dockerfile's.
prefetch() { # GOOS GOARCH package@version
	if ! (cd "$tmp" && GOWORK=off GOPATH="$tmp/gopath" GOMODCACHE="$modcache" CGO_ENABLED=0 \
		GOOS=$1 GOARCH=$2 go install -n "$3") 2>"$tmp/log"; then
		cat "$tmp/log" >&2
		exit 1
	fi
}
prefetch wasip1 wasm github.com/zegl/kube-score/cmd/kube-score@v1.20.0
prefetch linux "$(go env GOARCH)" sigs.k8s.io/krew/cmd/krew@v0.4.3
chmod -R u+w "$tmp"
rm -rf "$tmp"
tmp=

say "building $image..."
start=$SECONDS
build() {
	podman build --quiet --format docker --network none --pull=never --layers \
		--build-arg GO_IMAGE="$go_image" --build-arg RUNTIME_IMAGE="$runtime_image" \
		--build-arg GOPROXY=file:///host/gomodcache/cache/download --build-arg GOSUMDB=off --build-arg GOFLAGS= \
		--build-arg GOMODCACHE=/host/gomodcache --build-arg GOCACHE=/host/gocache \
		--build-arg VERSION="$version" \
		-v "$modcache:/host/gomodcache:ro" -v "$gocache:/host/gocache" \
		-f "$top/Dockerfile" "$@" "$top" >/dev/null
}
# The build stage first, under a tag of its own, so that its images
# (hundreds of MB, little use to the next build: the host's build cache
# makes its compiles quick) can be removed afterwards; the second build
# takes it from the layer cache.
build_stage=$name-build-stage:$image_key
build --target build -t "$build_stage"
build -t "$image"
podman rmi "$build_stage" >/dev/null
say "built $image in $((SECONDS - start)) s"
podman tag "$image" "$name:latest"
# Older keys of this image, never one a container uses, and build stages
# a failed build left.
podman images --noheading --format '{{.Repository}}:{{.Tag}}' --filter "reference=$name" --filter "reference=$name-build-stage" |
	while read -r old; do
		# The filter lists every tag of a matching image: only ours go.
		case $old in "$image" | "$name:latest" | *"<none>"*) continue ;; "$name":* | "$name-build-stage":*) ;; *) continue ;; esac
		podman rmi "$old" >/dev/null 2>&1 || true
	done
echo "$image"

#!/usr/bin/env bash
# Builds the plugin sandbox's root filesystem once per machine and image
# version, into a cache outside the repository, and prints its path (a
# directory, ready to be a container's read-only root).
#
# Contents: Debian bookworm's Essential packages plus bash, ca-certificates and
# the tools the kubectx/kubens scripts call (mmdebstrap, from the mirrors this
# machine's apt uses), a static kubectl built from the Go module proxy
# (images/kubectl) at /usr/local/bin/kubectl, the containers' first program
# kmcp-launch (sandbox/container/internal/launcher) at
# /usr/local/libexec/kmcp-launch, the pods' kmcp-pod
# (sandbox/kubernetes/internal/podlauncher) at /usr/local/libexec/kmcp-pod,
# and empty mount points /plugin, /run/kube
# and /run/launch. The package list with versions is in
# /etc/kmcp-image-manifest, with the sha256 of kmcp-launch's source.
#
# Keep version and kubectl_version in step with images/images.go.
set -euo pipefail
# Bump to rebuild the image on every machine after changing what goes into it.
version=4
kubectl_version=v1.37.2
# Fixed timestamps make the tree reproducible (2025-05-20T00:00:00Z).
epoch=1747699200
suite=bookworm
# The sandbox's plugins are shell scripts (kubectx, kubens) calling these.
packages=bash,ca-certificates,coreutils,grep,sed,mawk,ncurses-bin,findutils

top=$(cd "$(dirname "$0")/.." && pwd)
cache=${KMCP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubernetes-mcp-server}
images=$cache/images
out=$images/plugin-rootfs-$version-kubectl-$kubectl_version
manifest=etc/kmcp-image-manifest
if [[ -s $out/rootfs/$manifest ]]; then echo "$out/rootfs"; exit 0; fi

if [[ $(id -u) != 0 ]]; then
	echo "build-image: need root (mmdebstrap writes a root-owned tree)" >&2
	exit 1
fi
mkdir -p "$images" "$cache/bin"
# Concurrent test runs share the cache: one builds, the others wait.
exec 9>"$cache/.images.lock"
flock 9
if [[ -s $out/rootfs/$manifest ]]; then echo "$out/rootfs"; exit 0; fi
# Left over by an interrupted build. --one-file-system: never descend into a
# /proc or /dev that mmdebstrap may have left mounted there.
for stale in "$images"/.tmp.*; do
	[[ -e $stale ]] && { rm -rf --one-file-system "$stale" || true; }
done

# kubectl, cached by version so an image bump does not rebuild it.
kubectl=$cache/bin/kubectl-$kubectl_version
if [[ ! -x $kubectl ]]; then
	mod=$top/images/kubectl
	want="k8s.io/kubectl v0.${kubectl_version#v1.}"
	if ! grep -qF "	$want" "$mod/go.mod"; then
		echo "build-image: $mod/go.mod does not require $want; keep kubectl_version in step" >&2
		exit 1
	fi
	echo "build-image: building kubectl $kubectl_version (once per machine, about 2 minutes)..." >&2
	minor=${kubectl_version#v1.}; minor=${minor%%.*}
	ldflags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$kubectl_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	done
	(cd "$mod" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$kubectl.tmp.$$" .)
	mv "$kubectl.tmp.$$" "$kubectl"
fi

# kmcp-launch, static; bump version after changing its source (a test
# compares the source's sha256 with the image manifest's).
launcher_src=$top/sandbox/container/internal/launcher
launcher=$(mktemp "$cache/bin/.kmcp-launch.XXXXXX")
trap 'rm -f "$launcher"' EXIT
(cd "$top" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$launcher" ./sandbox/container/internal/launcher)
# kmcp-pod, the first program of the kubernetes backend's pods, the same way.
podlauncher_src=("$top/sandbox/kubernetes/internal/podlauncher/main.go" "$top/sandbox/kubernetes/internal/launch/launch.go")
podlauncher=$(mktemp "$cache/bin/.kmcp-pod.XXXXXX")
trap 'rm -f "$launcher" "$podlauncher"' EXIT
(cd "$top" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$podlauncher" ./sandbox/kubernetes/internal/podlauncher)

if ! command -v mmdebstrap >/dev/null 2>&1; then
	echo "build-image: installing mmdebstrap" >&2
	apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null; }
	apt_install 2>/dev/null || { apt-get update -qq && apt_install; }
fi
# debian_sources: the machine's Debian apt entries for $suite.
source "$top/hack/debian-sources.sh"

echo "build-image: building $out (once per machine and image version)..." >&2
start=$SECONDS
tmp=$(mktemp -d "$images/.tmp.XXXXXX")
trap 'rm -rf --one-file-system "$tmp" || true; rm -f "$launcher" "$podlauncher"' EXIT
debian_sources >"$tmp/sources.list"
if [[ ! -s $tmp/sources.list ]]; then
	echo "deb http://deb.debian.org/debian $suite main" >"$tmp/sources.list"
fi
root=$tmp/rootfs
# merged-usr: bookworm's way, without the usrmerge package (and the perl it
# pulls in). No manuals, documentation (but the copyright files) or
# translations: nothing in a sandbox reads them. Its hooks talk on stdout, which
# is for the path alone.
SOURCE_DATE_EPOCH=$epoch mmdebstrap --quiet --variant=essential --include="$packages" \
	--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/lintian/*' \
	"$suite" "$root" "$tmp/sources.list" >&2

install -D -m 0755 "$kubectl" "$root/usr/local/bin/kubectl"
install -D -m 0755 "$launcher" "$root/usr/local/libexec/kmcp-launch"
install -D -m 0755 "$podlauncher" "$root/usr/local/libexec/kmcp-pod"
# Mount points: the plugin file goes in /plugin, the kubeconfig in /run/kube,
# the call's argv and environment in /run/launch, a tmpfs over /tmp
# (HOME=/tmp). The root is read-only, so they must exist.
install -d -m 0755 "$root/plugin" "$root/run/kube" "$root/run/launch"
install -d -m 1777 "$root/tmp"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
# The host's, copied in by mmdebstrap: empty instead (resolv.conf stays as a
# mount point, should a sandbox ever need DNS).
for f in resolv.conf hostname machine-id; do
	install -m 0644 /dev/null "$root/etc/$f"
done
# What a read-only sandbox never reads and what differs from build to build.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* \
	"$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
	"$root"/var/cache/ldconfig/aux-cache "$root"/etc/ssl/certs/.*.tmp 2>/dev/null || true
# base-passwd's entries (no shadow file in an Essential-only system: "*").
if ! awk -F: '$1 == "nobody" && $3 == 65534 && $4 == 65534 { ok = 1 } END { exit !ok }' "$root/etc/passwd" ||
	! awk -F: '$1 == "nogroup" && $3 == 65534 { ok = 1 } END { exit !ok }' "$root/etc/group"; then
	echo "build-image: user nobody or group nogroup (65534) missing from the image" >&2
	exit 1
fi
{
	echo "# plugin-rootfs $version, Debian $suite (SOURCE_DATE_EPOCH=$epoch), built by hack/build-image.sh"
	sed 's/^/# source: /' "$tmp/sources.list"
	echo "# kubectl $kubectl_version sha256 $(sha256sum <"$kubectl" | cut -d' ' -f1)"
	echo "# kmcp-launch source sha256 $(sha256sum <"$launcher_src/main.go" | cut -d' ' -f1)"
	echo "# kmcp-pod source sha256 $(cat "${podlauncher_src[@]}" | sha256sum | cut -d' ' -f1)"
	dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Package} ${Version} ${Architecture}\n' | LC_ALL=C sort
} >"$root/$manifest"
# Same timestamps every build (mmdebstrap does this only for its tarballs).
find "$root" -newermt "@$epoch" -print0 | xargs -0r touch -h -d "@$epoch"
rm -f "$tmp/sources.list"
chmod 0755 "$tmp"
rm -rf --one-file-system "$out" # only ever an incomplete one here
mv "$tmp" "$out"
rm -f "$launcher"
trap - EXIT
echo "build-image: built in $((SECONDS - start)) s" >&2
echo "$out/rootfs"

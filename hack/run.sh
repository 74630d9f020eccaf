#!/usr/bin/env bash
# `make run`: serves MCP over HTTP with example plugins, each call in its own
# containerd container, on a fresh Debian 12 machine (root). In order:
#
#  1. installs containerd and runc from Debian when they are missing;
#  2. builds (once, cached) the sandbox image with hack/build-image.sh;
#  3. builds the example plugins of examples/plugins/ (cached by content) into
#     one folder, with kube-score when hack/build-plugins.sh has built it;
#  4. uses the containerd that answers on the configured socket
#     (PLUGINS_CONTAINERD_ADDRESS, else the configuration's, by default
#     /run/containerd/containerd.sock); when none answers, starts a containerd
#     of its own on a private socket, root and state folder, stopped again
#     (with its shims) when the server ends;
#  5. runs the server with examples/run/config.toml, `--port 8080` (or
#     $KMCP_RUN_PORT) and this script's arguments, which come last and so win
#     (`make run ARGS="--port 9000"`, `ARGS="--config my.toml"`).
#
# SIGINT, SIGTERM and SIGHUP stop the server; the script exits with its status.
# Environment: KMCP_RUN_PORT (default 8080), KMCP_RUN_BINARY (default
# bin/kubernetes-mcp-server, built when missing), KMCP_CACHE (the build cache).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${KMCP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubernetes-mcp-server}
port=${KMCP_RUN_PORT:-8080}
bin=${KMCP_RUN_BINARY:-$top/bin/kubernetes-mcp-server}
config=$top/examples/run/config.toml

say() { echo "run: $*" >&2; }
die() { say "$*"; exit 1; }

# Everything this script starts, so that every way out stops it.
private= # the private containerd's folder
ctrd_pid=
server_pid=
cleanup() {
	local status=$?
	set +e
	# Bounded: the server's shutdown grace, then containerd's 10 s.
	trap '' INT TERM HUP
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid"
		wait "$server_pid"
	fi
	if [[ -n $private ]]; then
		stop_containerd
	fi
	exit "$status"
}
trap cleanup EXIT
# Before the server runs a signal ends the script (and cleanup stops what
# runs); afterwards it is passed to the server, which ends on its own.
on_signal() {
	if [[ -n $server_pid ]]; then
		kill -TERM "$server_pid" 2>/dev/null || true
	else
		exit 130
	fi
}
trap on_signal INT TERM HUP

stop_containerd() {
	local sock=$private/containerd.sock i
	if [[ -n $ctrd_pid ]]; then
		kill -TERM "$ctrd_pid" 2>/dev/null
		for ((i = 0; i < 100; i++)); do
			kill -0 "$ctrd_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$ctrd_pid" 2>/dev/null
		wait "$ctrd_pid" 2>/dev/null
	fi
	# Shims outlive containerd by design; a server that ended cleanly has
	# ended its calls and so its shims, this ends any left by a crash.
	pkill -KILL -f -- "containerd-shim.* -address $sock( |$)"
	# Network namespaces and mounts left by a crash, innermost first.
	awk -v dir="$private/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
	rm -rf --one-file-system "$private"
	say "stopped the private containerd (pid $ctrd_pid); removed $private"
	ctrd_pid= private=
}

# 1. Debian packages.
"$top/hack/install-packages.sh" "make run" containerd=containerd ctr=containerd runc=runc \
	setsid=util-linux setpriv=util-linux pkill=procps

if [[ ! -x $bin ]]; then
	say "building $bin"
	(cd "$top" && go build -o "$bin" ./cmd/kubernetes-mcp-server)
fi

# 2. The sandbox image.
rootfs=$("$top/hack/build-image.sh")
say "sandbox image: $rootfs"

# 3. The example plugins, each kept as <name>@<content hash> and hard-linked
# into one folder under its plugin name. The Go ones are static: they run on
# the image's bare Debian.
examples=$cache/examples
plugins=$examples/plugins
mkdir -p "$plugins"
install_plugin() { # name file
	[[ $plugins/$1 -ef $2 ]] && return
	ln -f "$2" "$plugins/.$1.tmp.$$"
	mv -f "$plugins/.$1.tmp.$$" "$plugins/$1"
}
prune() { # name keep: older builds (a server running one keeps its hard link)
	find "$examples" -maxdepth 1 -name "$1@*" ! -name '*.tmp.*' ! -name "${2##*/}" -delete
}
go_version=$(go env GOVERSION GOOS GOARCH)
for dir in "$top"/examples/plugins/*/; do
	dir=${dir%/}
	[[ -f $dir/main.go ]] || continue
	name=kubectl-$(basename "$dir" | tr - _)
	key=$( (
		cd "$top"
		echo "$go_version"
		cat go.mod go.sum
		find "${dir#"$top"/}" -name '*.go' ! -name '*_test.go' | LC_ALL=C sort | xargs sha256sum
	) | sha256sum | cut -c1-16)
	out=$examples/$name@$key
	if [[ ! -x $out ]]; then
		say "building $name from ${dir#"$top"/}"
		(cd "$top" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$out.tmp.$$" "./${dir#"$top"/}")
		mv "$out.tmp.$$" "$out"
		prune "$name" "$out"
	fi
	install_plugin "$name" "$out"
done
for file in "$top"/examples/plugins/kubectl-*; do
	[[ -f $file ]] || continue
	name=$(basename "$file")
	out=$examples/$name@$(sha256sum <"$file" | cut -c1-16)
	if [[ ! -x $out ]]; then
		install -m 0755 "$file" "$out.tmp.$$"
		mv "$out.tmp.$$" "$out"
		prune "$name" "$out"
	fi
	install_plugin "$name" "$out"
done
# kube-score, only when already built: building it takes minutes.
if [[ -x $cache/plugins/kubectl-score ]]; then
	ln -sfn "$cache/plugins/kubectl-score" "$plugins/.kubectl-score.tmp.$$"
	mv -fT "$plugins/.kubectl-score.tmp.$$" "$plugins/kubectl-score"
else
	rm -f "$plugins/kubectl-score"
fi
say "example plugins in $plugins: $(cd "$plugins" && ls | sed 's/^kubectl-//' | tr _ - | paste -sd' ')"

export KMCP_RUN_PLUGINS=$plugins KMCP_RUN_ROOTFS=$rootfs KMCP_RUN_STATE_DIR=/run/kubernetes-mcp-server

# 4. containerd: the configured one when it answers, else our own. The
# configuration (this script's arguments included) says which socket and
# whether a sandbox is wanted at all.
effective=$("$bin" config show --config "$config" --port "$port" "$@")
setting() { sed -n "s/^$1 = \"\(.*\)\" # .*/\1/p" <<<"$effective"; }
backend=$(setting backend)
address=$(setting containerd_address)
answers() { [[ -S $1 ]] && ctr --address "$1" --connect-timeout 2s --timeout 10s version >/dev/null 2>&1; }
if [[ $backend == none ]]; then
	say "sandbox backend none: no containerd needed"
elif answers "$address"; then
	say "containerd: the one answering on $address"
else
	[[ $(id -u) == 0 ]] || die "no containerd answers on $address, and starting one needs root"
	say "no containerd answers on $address: starting one of our own"
	# Short, so the socket path stays under 108 bytes.
	private=$(mktemp -d /run/kmcp-run.XXXXXX)
	sock=$private/containerd.sock
	cat >"$private/config.toml" <<EOF
version = 2
root = "$private/root"
state = "$private/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$private/opt"
EOF
	# Its own session, so a Ctrl-C reaches the server first; it dies with
	# this script should the script be killed.
	setsid setpriv --pdeathsig KILL containerd --config "$private/config.toml" >"$private/containerd.log" 2>&1 &
	ctrd_pid=$!
	for ((i = 0; ; i++)); do
		answers "$sock" && break
		if ! kill -0 "$ctrd_pid" 2>/dev/null || ((i >= 300)); then
			tail -n 20 "$private/containerd.log" >&2
			die "the private containerd did not answer on $sock"
		fi
		sleep 0.1
	done
	say "private containerd: pid $ctrd_pid, socket $sock, log $private/containerd.log"
	export PLUGINS_CONTAINERD_ADDRESS=$sock
	KMCP_RUN_STATE_DIR=$private/sandbox
fi

# 5. The server, in its own session too: the signal handler above passes it
# SIGTERM. It reads this terminal's stdin, should the arguments ask for stdio.
setsid setpriv --pdeathsig TERM "$bin" --config "$config" --port "$port" "$@" <&0 &
server_pid=$!
while :; do
	status=0
	wait "$server_pid" || status=$?
	# A signal interrupts wait (status > 128) while the server still ends.
	if ((status > 128)) && kill -0 "$server_pid" 2>/dev/null; then continue; fi
	break
done
if ((status > 128)); then
	# It ended just after the interruption: bash keeps its real status.
	wait "$server_pid" 2>/dev/null && status=0 || { s=$?; ((s == 127)) || status=$s; }
fi
server_pid=
say "the server exited with status $status"
exit "$status"

#!/usr/bin/env bash
# Installs the Debian packages that provide the given commands, when any of
# them is missing: `install-packages.sh WHO COMMAND=PACKAGE ...`. A COMMAND
# with a slash is a path that must exist (a file of a package without a
# command, or Debian's own build of a command found elsewhere on PATH).
# WHO names the caller in messages. The one place the set-up scripts
# install from.
set -euo pipefail
who=$1
shift
missing=()
for pair in "$@"; do
	what=${pair%%=*}
	if [[ $what == */* ]]; then
		[[ -e $what ]] || missing+=("${pair#*=}")
	else
		command -v "$what" >/dev/null 2>&1 || missing+=("${pair#*=}")
	fi
done
((${#missing[@]})) || exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [[ $(id -u) != 0 ]]; then
	echo "$who: need root to install: ${missing[*]}" >&2
	exit 1
fi
echo "$who: installing ${missing[*]} from Debian" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

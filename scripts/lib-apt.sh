# shellcheck shell=bash
# scripts/lib-apt.sh - sourced by run.sh and test.sh: the build packages
# and one way to install what is missing.
#
#   BUILD_PKGS          what building lossd needs (Debian 12 names)
#   apt_ensure WHO PKG...
#                       installs the PKGs dpkg does not have (as root, or
#                       through sudo), apt's output in a log shown only on
#                       failure; returns non-zero when it cannot.

# shellcheck disable=SC2034 # used by the scripts that source this
BUILD_PKGS=(cmake make gcc libc6-dev pkg-config libmicrohttpd-dev libjansson-dev libuv1-dev
            libsqlite3-dev libpq-dev)

apt_ensure() {
	local who=$1 p sudo="" log
	shift
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
	((${#missing[@]})) || return 0
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || {
			echo "$who: need root or sudo to install: ${missing[*]}" >&2
			return 1
		}
		sudo=sudo
	fi
	log=${TMPDIR:-/tmp}/lossd-apt.log
	echo "$who: installing ${missing[*]} (log: $log)" >&2
	if ! { $sudo apt-get update &&
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends \
			"${missing[@]}"; } >"$log" 2>&1; then
		cat "$log" >&2
		return 1
	fi
}

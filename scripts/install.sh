#!/bin/sh
# k3rs installer, with k3s' interface:
#
#   curl -sfL https://<host>/install.sh | sh -
#   curl -sfL https://<host>/install.sh | INSTALL_K3RS_EXEC="server --disable ingress" sh -
#   curl -sfL https://<host>/install.sh | sh -s - --disable ingress --tls-san k3rs.example.com
#
# It puts the k3rs binary into the bin dir (downloaded and checked against the release's
# sha256sum.txt, or already there), links kubectl to it, writes k3rs-killall.sh and
# k3rs-uninstall.sh beside it, installs a systemd unit or an OpenRC service (the same ones as
# packaging/ in the k3rs repository) with an environment file, then enables and starts it.
# Run it again to upgrade in place: running pods keep running (their containers outlive k3rs).
#
# Environment:
#   INSTALL_K3RS_VERSION       release to download (default: latest)
#   INSTALL_K3RS_RELEASE_URL   where releases are published: <url>/<version>/k3rs-<arch> and
#                              <url>/<version>/sha256sum.txt (k3rs has no default host yet)
#   INSTALL_K3RS_SKIP_DOWNLOAD true (or binary): the binary is already at <bin dir>/k3rs
#   INSTALL_K3RS_BIN_DIR       where k3rs, the links and the scripts go (default /usr/local/bin)
#   INSTALL_K3RS_SYSTEMD_DIR   where the systemd unit goes (default /etc/systemd/system)
#   INSTALL_K3RS_EXEC          the command and flags of the service (default: server); the
#                              script's arguments follow it, e.g. "server --disable ingress"
#   INSTALL_K3RS_SYMLINK       skip: no kubectl link; force: always; default: only when no
#                              kubectl is on PATH
#   INSTALL_K3RS_SKIP_ENABLE   true: neither enable nor start the service
#   INSTALL_K3RS_SKIP_START    true: do not start (or restart) the service
#   INSTALL_K3RS_FORCE_RESTART true: restart the service even if nothing changed
#   INSTALL_K3RS_INIT          systemd, openrc or none (default: detected), e.g. when building
#                              an image whose init does not run at install time
#   K3RS_*                     kept in the service's environment file, e.g. K3RS_TOKEN,
#                              K3RS_KUBECONFIG_MODE=644, K3RS_DATA_DIR; so are NO_PROXY,
#                              HTTP_PROXY and HTTPS_PROXY
#
# For tests only: INSTALL_K3RS_ROOT=/some/dir installs into that directory as if it were /:
# every file is written below it, the service's data dir and kubeconfig default to paths below
# it, and no service manager is asked to do anything (neither here nor in the scripts).
set -eu

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
fatal() {
	echo "[ERROR] $*" >&2
	exit 1
}

# One shell word that reads back as $1 (single quotes; a quote inside becomes '\'').
sq() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# One systemd ExecStart word that reads back as $1: single-quoted, with systemd's escapes for
# backslash and quote inside the quotes, and %% and $$ for its specifiers and variables.
sd_word() {
	printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g" -e 's/%/%%/g' -e 's/\$/$$/g')"
}

is_true() { [ "${1:-}" = true ]; }

# --- the command line: INSTALL_K3RS_EXEC's words, then the script's arguments ---------------

# INSTALL_K3RS_EXEC is split into words as a shell would split it (quotes group, backslash
# escapes), without expanding anything: xargs does exactly that splitting.
exec_words=
if [ -n "${INSTALL_K3RS_EXEC:-}" ]; then
	exec_words=$(printf '%s\n' "$INSTALL_K3RS_EXEC" | xargs -n 1 printf '%s\n') ||
		fatal "INSTALL_K3RS_EXEC: cannot split into words (an unmatched quote?): $INSTALL_K3RS_EXEC"
fi
nargs=$#
old_ifs=$IFS
IFS='
'
set -f
for w in $exec_words; do
	set -- "$@" "$w"
done
set +f
IFS=$old_ifs
# Move the script's own arguments behind the words just appended.
while [ "$nargs" -gt 0 ]; do
	set -- "$@" "$1"
	shift
	nargs=$((nargs - 1))
done

case "${1:-}" in
-* | "") CMD=server ;;
*)
	CMD=$1
	shift
	;;
esac
[ "$CMD" = server ] || fatal "k3rs runs only as 'server' (it has no '$CMD' command to run as a service)"
if [ -n "${K3RS_URL:-}" ]; then
	fatal "K3RS_URL is set, but k3rs cannot join a node to a server yet: install without K3RS_URL"
fi

# Settings the scripts need, from the flags (--flag value or --flag=value), else the
# environment, else the config file.
flag_value() {
	want=$1
	shift
	found=
	while [ $# -gt 0 ]; do
		case "$1" in
		"$want")
			[ $# -ge 2 ] || fatal "$want needs a value"
			found=$2
			shift
			;;
		"$want"=*) found=${1#*=} ;;
		esac
		shift
	done
	printf '%s' "$found"
}

# A top-level scalar of a YAML config file (key: value, optionally quoted).
config_value() {
	[ -r "$2" ] || return 0
	sed -n "s/^$1:[[:space:]]*[\"']\{0,1\}\([^\"'#]*[^\"'#[:space:]]\)[\"']\{0,1\}[[:space:]]*\(#.*\)\{0,1\}\$/\1/p" "$2" | tail -n 1
}

# --- paths ----------------------------------------------------------------------------------

ROOT=${INSTALL_K3RS_ROOT:-}
case "$ROOT" in
"" | /*) ROOT=${ROOT%/} ;;
*) fatal "INSTALL_K3RS_ROOT must be an absolute path, not $ROOT" ;;
esac

BIN_DIR=$ROOT${INSTALL_K3RS_BIN_DIR:-/usr/local/bin}
SYSTEMD_DIR=$ROOT${INSTALL_K3RS_SYSTEMD_DIR:-/etc/systemd/system}
ETC_DIR=$ROOT/etc/k3rs
K3RS_BIN=$BIN_DIR/k3rs
KILLALL_SH=$BIN_DIR/k3rs-killall.sh
UNINSTALL_SH=$BIN_DIR/k3rs-uninstall.sh
# Where OpenRC's service logs and keeps its pid (for the uninstall script).
# shellcheck disable=SC2034
LOG_FILE=$ROOT/var/log/k3rs.log
# shellcheck disable=SC2034
PID_FILE=$ROOT/run/k3rs.pid

config_file=$(flag_value --config "$@")
config_file=${config_file:-${K3RS_CONFIG_FILE:-$ETC_DIR/config.yaml}}
DATA_DIR=$(flag_value --data-dir "$@")
DATA_DIR=${DATA_DIR:-${K3RS_DATA_DIR:-$(config_value data-dir "$config_file")}}
KUBECONFIG_FILE=$(flag_value --write-kubeconfig "$@")
KUBECONFIG_FILE=${KUBECONFIG_FILE:-${K3RS_WRITE_KUBECONFIG:-${K3RS_KUBECONFIG_OUTPUT:-$(config_value write-kubeconfig "$config_file")}}}
# Only a test root adds settings of its own: the service's defaults would be the host's paths.
root_env=
if [ -n "$ROOT" ]; then
	if [ -z "$DATA_DIR" ]; then
		DATA_DIR=$ROOT/var/lib/k3rs
		root_env="${root_env}K3RS_DATA_DIR=$(sq "$DATA_DIR")
"
	fi
	if [ -z "$KUBECONFIG_FILE" ]; then
		KUBECONFIG_FILE=$ETC_DIR/k3rs.yaml
		root_env="${root_env}K3RS_WRITE_KUBECONFIG=$(sq "$KUBECONFIG_FILE")
"
	fi
fi
DATA_DIR=${DATA_DIR:-/var/lib/k3rs}
case "$DATA_DIR" in
/*) ;;
*) fatal "the data dir must be an absolute path, not $DATA_DIR" ;;
esac
[ "$DATA_DIR" != / ] || fatal "the data dir cannot be /"

# --- the service manager --------------------------------------------------------------------

INIT=${INSTALL_K3RS_INIT:-}
if [ -z "$INIT" ]; then
	if [ -x /sbin/openrc-run ]; then
		INIT=openrc
	elif command -v systemctl >/dev/null 2>&1; then
		INIT=systemd
	else
		fatal "found neither systemd nor OpenRC to run k3rs as a service (set INSTALL_K3RS_INIT=none to install without one)"
	fi
fi
case "$INIT" in
systemd)
	SERVICE_FILE=$SYSTEMD_DIR/k3rs.service
	ENV_FILE=$SYSTEMD_DIR/k3rs.service.env
	;;
openrc)
	SERVICE_FILE=$ROOT/etc/init.d/k3rs
	ENV_FILE=$ETC_DIR/k3rs.env
	;;
none)
	SERVICE_FILE=
	ENV_FILE=$ETC_DIR/k3rs.env
	;;
*) fatal "INSTALL_K3RS_INIT must be systemd, openrc or none, not $INIT" ;;
esac
# Service managers are asked to act only on the real root.
MANAGE=$INIT
[ -z "$ROOT" ] || MANAGE=none

[ "$(id -u)" -eq 0 ] || fatal "run the installer as root, e.g. curl -sfL <url> | sudo sh -"

installed_hashes() {
	sha256sum "$K3RS_BIN" ${SERVICE_FILE:+"$SERVICE_FILE"} "$ENV_FILE" 2>/dev/null || true
}
PRE_INSTALL_HASHES=$(installed_hashes)

# --- the binary -----------------------------------------------------------------------------

detect_arch() {
	case "$(uname -m)" in
	x86_64 | amd64) ARCH=amd64 ;;
	aarch64 | arm64) ARCH=arm64 ;;
	*) fatal "k3rs is built for amd64 and arm64, not $(uname -m)" ;;
	esac
}

download() { # url file
	if command -v curl >/dev/null 2>&1; then
		curl -sfL -o "$2" "$1" || fatal "download of $1 failed"
	elif command -v wget >/dev/null 2>&1; then
		wget -qO "$2" "$1" || fatal "download of $1 failed"
	else
		fatal "need curl or wget to download k3rs"
	fi
}

sha256_of() {
	h=$(sha256sum "$1")
	printf '%s' "${h%% *}"
}

download_and_verify() {
	# k3s also takes "binary" (its other artifact, the SELinux policy, k3rs has none of).
	if is_true "${INSTALL_K3RS_SKIP_DOWNLOAD:-}" || [ "${INSTALL_K3RS_SKIP_DOWNLOAD:-}" = binary ]; then
		info "Skipping the download: using $K3RS_BIN"
		[ -x "$K3RS_BIN" ] || fatal "INSTALL_K3RS_SKIP_DOWNLOAD=true, but there is no executable k3rs at $K3RS_BIN"
		return
	fi
	[ -n "${INSTALL_K3RS_RELEASE_URL:-}" ] ||
		fatal "INSTALL_K3RS_RELEASE_URL is not set, and k3rs has no default release host: set it, or put the binary at $K3RS_BIN and set INSTALL_K3RS_SKIP_DOWNLOAD=true"
	detect_arch
	version=${INSTALL_K3RS_VERSION:-latest}
	base=${INSTALL_K3RS_RELEASE_URL%/}/$version
	TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/k3rs-install.XXXXXXXX")
	trap 'rm -rf "$TMP_DIR"' EXIT
	info "Downloading $base/sha256sum.txt"
	download "$base/sha256sum.txt" "$TMP_DIR/sha256sum.txt"
	expected=$(sed -n "s/^\([0-9a-f]\{64\}\)[[:space:]]\{1,\}\*\{0,1\}\(.*\/\)\{0,1\}k3rs-$ARCH\$/\1/p" "$TMP_DIR/sha256sum.txt" | head -n 1)
	[ -n "$expected" ] || fatal "$base/sha256sum.txt has no sha256 for k3rs-$ARCH"
	if [ -x "$K3RS_BIN" ] && [ "$(sha256_of "$K3RS_BIN")" = "$expected" ]; then
		info "The installed $K3RS_BIN is already k3rs $version ($ARCH)"
		return
	fi
	info "Downloading $base/k3rs-$ARCH"
	download "$base/k3rs-$ARCH" "$TMP_DIR/k3rs"
	got=$(sha256_of "$TMP_DIR/k3rs")
	[ "$got" = "$expected" ] || fatal "k3rs-$ARCH has sha256 $got, but sha256sum.txt says $expected"
	chmod 755 "$TMP_DIR/k3rs"
	mkdir -p "$BIN_DIR"
	# A rename: a running k3rs keeps its (old) file, and the path is never half-written.
	cp "$TMP_DIR/k3rs" "$K3RS_BIN.new.$$"
	mv -f "$K3RS_BIN.new.$$" "$K3RS_BIN"
	info "Installed k3rs $version ($ARCH) to $K3RS_BIN"
}

# --- kubectl --------------------------------------------------------------------------------

create_symlinks() {
	case "${INSTALL_K3RS_SYMLINK:-}" in
	skip) return ;;
	force | "") ;;
	*) fatal "INSTALL_K3RS_SYMLINK must be skip or force, not ${INSTALL_K3RS_SYMLINK}" ;;
	esac
	link=$BIN_DIR/kubectl
	if [ "${INSTALL_K3RS_SYMLINK:-}" != force ]; then
		if [ -e "$link" ] || [ -L "$link" ]; then
			info "Skipping $link symlink to k3rs: it exists already"
			return
		fi
		if other=$(command -v kubectl 2>/dev/null); then
			info "Skipping $link symlink to k3rs: kubectl is on PATH at $other"
			return
		fi
	fi
	info "Creating $link symlink to k3rs"
	ln -sf k3rs "$link"
}

# --- the environment file -------------------------------------------------------------------

create_env_file() {
	info "Writing the service's environment to $ENV_FILE"
	mkdir -p "$(dirname "$ENV_FILE")"
	umask_was=$(umask)
	umask 077
	{
		env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' |
			grep -E '^(K3RS_[A-Za-z0-9_]+|NO_PROXY|HTTP_PROXY|HTTPS_PROXY|no_proxy|http_proxy|https_proxy)$' |
			sort -u | while read -r name; do
			# A name matched above is a plain identifier, so this only reads the variable.
			isset="" value=""
			eval "isset=\${$name+x} value=\${$name-}"
			[ -n "$isset" ] || continue
			printf '%s=%s\n' "$name" "$(sq "$value")"
		done
		printf '%s' "$root_env"
	} >"$ENV_FILE.tmp"
	umask "$umask_was"
	chmod 600 "$ENV_FILE.tmp"
	mv -f "$ENV_FILE.tmp" "$ENV_FILE"
}

# --- the service ----------------------------------------------------------------------------

# The command line of the service, for systemd's ExecStart.
sd_exec() {
	printf '%s %s' "$(sd_word "$K3RS_BIN")" "$CMD"
	for a in "$@"; do
		printf ' %s' "$(sd_word "$a")"
	done
}

# The same for OpenRC's command_args (a shell string).
sh_args() {
	printf '%s' "$CMD"
	for a in "$@"; do
		printf ' %s' "$(sq "$a")"
	done
}

# packaging/systemd/k3rs.service with the installed command line and environment file.
create_systemd_unit() {
	info "systemd: writing $SERVICE_FILE"
	mkdir -p "$SYSTEMD_DIR"
	cat >"$SERVICE_FILE.tmp" <<EOF
# k3rs server as a systemd service, written by the k3rs installer (install.sh); remove it
# with $UNINSTALL_SH. The environment file beside it holds the K3RS_* settings it was
# installed with.
[Unit]
Description=k3rs: a k3s-style Kubernetes distribution in one binary
Wants=network-online.target
After=network-online.target
# Never give up restarting, however often it fails.
StartLimitIntervalSec=0

[Service]
# k3rs does not speak sd_notify, so "started" means the process is running; it logs
# "k3rs server is ready" when it is.
Type=exec
EnvironmentFile=-/etc/default/k3rs
EnvironmentFile=-$ENV_FILE
ExecStart=$(sd_exec "$@")
# Only the k3rs process is signalled on stop or restart: the containers it starts later live
# in the same cgroup and must outlive a restart of the control plane.
KillMode=process
# k3rs manages the cgroups below its own (pods and containers).
Delegate=yes
# SIGTERM, then k3rs drains (10 s grace) and exits 0.
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=always
RestartSec=5s
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity

[Install]
WantedBy=multi-user.target
EOF
	mv -f "$SERVICE_FILE.tmp" "$SERVICE_FILE"
}

# packaging/openrc/k3rs with the installed command line and environment file.
create_openrc_service() {
	info "openrc: writing $SERVICE_FILE"
	mkdir -p "$(dirname "$SERVICE_FILE")"
	cat >"$SERVICE_FILE.tmp" <<EOF
#!/sbin/openrc-run
# k3rs server as an OpenRC service, written by the k3rs installer (install.sh); remove it
# with $UNINSTALL_SH. $ENV_FILE holds the K3RS_* settings it was installed with.
#
# Configure with /etc/k3rs/config.yaml (keys are the flag names), or in /etc/conf.d/k3rs:
#   K3RS_OPTS="--debug"                 extra flags
#   export K3RS_DATA_DIR=/srv/k3rs      any K3RS_* variable (exported)

name="k3rs"
description="k3rs: a k3s-style Kubernetes distribution in one binary"

command=$(sq "$K3RS_BIN")
command_args="$(sh_args "$@" | sed -e 's/[\\"$\`]/\\&/g') \${K3RS_OPTS:-}"
# supervise-daemon restarts k3rs if it dies; it sends SIGTERM on stop, and k3rs drains
# (10 s grace) and exits 0.
supervisor="supervise-daemon"
respawn_delay=5
respawn_max=0
retry="TERM/30/KILL/5"
pidfile="/run/\${RC_SVCNAME}.pid"
output_log="/var/log/\${RC_SVCNAME}.log"
error_log="/var/log/\${RC_SVCNAME}.log"
rc_ulimit="-n 1048576 -u unlimited -c unlimited"
# Containers started by k3rs must survive a restart of the service.
rc_cgroup_cleanup="no"

set -o allexport
if [ -f $(sq "$ENV_FILE") ]; then . $(sq "$ENV_FILE"); fi
set +o allexport

depend() {
	need net
	after net-online firewall
	use cgroups
}

start_pre() {
	checkpath --directory --mode 0755 /var/log
}
EOF
	chmod 755 "$SERVICE_FILE.tmp"
	mv -f "$SERVICE_FILE.tmp" "$SERVICE_FILE"
}

# --- killall and uninstall ------------------------------------------------------------------

# The settings a script starts with, what this installation is: the data dir (which
# K3RS_DATA_DIR overrides, as for k3rs itself) and the named installer variables.
script_settings() {
	echo "# What this installation is (written by install.sh)."
	echo "K3RS_DATA_DIR=\${K3RS_DATA_DIR:-$(sq "$DATA_DIR")}"
	for name in "$@"; do
		v=""
		eval "v=\$$name"
		printf '%s=%s\n' "$name" "$(sq "$v")"
	done
}

create_killall() {
	info "Writing $KILLALL_SH"
	{
		cat <<'EOF'
#!/bin/sh
# k3rs-killall.sh: stops k3rs and everything it runs on this node, leaving nothing running:
# the service (or any k3rs server of this data dir), every pod's containers, their shims and
# namespace holders; then unmounts what k3rs mounted under its data dir, removes the pods'
# cgroups, the nftables tables k3rs made (k3rs-proxy, k3rs-netpol, k3rs-podnet), the pod
# bridge k3rs0 and its veths. Data, images and configuration stay: `k3rs server` (or the
# service) starts again from them. Written by the k3rs installer; k3rs-uninstall.sh runs it.
# K3RS_DATA_DIR, when set, names another data dir than the one installed with.
set -u
EOF
		# MANAGE: the service manager to stop k3rs with (none for a test root).
		script_settings K3RS_BIN SERVICE_FILE MANAGE
		cat <<'EOF'

[ "$(id -u)" -eq 0 ] || {
	echo "k3rs-killall.sh: run it as root" >&2
	exit 1
}
case "$K3RS_DATA_DIR" in
/?*) ;;
*)
	echo "k3rs-killall.sh: K3RS_DATA_DIR must be an absolute path, not '$K3RS_DATA_DIR'" >&2
	exit 1
	;;
esac
K3RS_DATA_DIR=${K3RS_DATA_DIR%/}
AGENT=$K3RS_DATA_DIR/agent
LOCK=$K3RS_DATA_DIR/server/k3rs.lock
BRIDGE=k3rs0
NFT_TABLES="ip k3rs-proxy
ip k3rs-netpol
inet k3rs-podnet"

say() { echo "k3rs-killall: $*"; }

# The service first, so that it does not restart what is killed below.
case "$MANAGE" in
systemd)
	if [ -s "$SERVICE_FILE" ] && command -v systemctl >/dev/null 2>&1; then
		say "systemctl stop k3rs"
		systemctl stop k3rs || true
	fi
	;;
openrc)
	if [ -x "$SERVICE_FILE" ]; then
		say "$SERVICE_FILE stop"
		"$SERVICE_FILE" stop || true
	fi
	;;
esac

# k3rs processes of this installation: its binary (also when it was replaced since it
# started), or a k3rs elsewhere that holds this data dir's lock. One `ls` reads every
# process' binary.
k3rs_pids() {
	# shellcheck disable=SC2012
	ls -l /proc/[0-9]*/exe 2>/dev/null | sed -n 's|^.* /proc/\([0-9][0-9]*\)/exe -> \(.*\)$|\1 \2|p' |
		while read -r pid exe; do
			case "$exe" in
			"$K3RS_BIN" | "$K3RS_BIN (deleted)") echo "$pid" ;;
			*/k3rs | */"k3rs (deleted)")
				# shellcheck disable=SC2010
				if ls -l "/proc/$pid/fd" 2>/dev/null | grep -qF " -> $LOCK"; then
					echo "$pid"
				fi
				;;
			esac
		done
}

# Container shims of this data dir: the monitor program, run as k3rs-shim, names the
# container's state directory under <data-dir>/agent/containers/ on its command line.
# (grep finds the candidates; one argument must be that directory, not merely contain it.)
shim_pids() {
	nl='
'
	grep -lF -- "$AGENT/containers/" /proc/[0-9]*/cmdline 2>/dev/null | while read -r f; do
		# grep itself matches, and is gone by now.
		args=$({ tr '\0' '\n' <"$f"; } 2>/dev/null) || continue
		case "$args" in
		k3rs-shim"$nl"*) ;;
		*) continue ;;
		esac
		case "$nl$args" in
		*"$nl$AGENT/containers/"*)
			pid=${f#/proc/}
			echo "${pid%/cmdline}"
			;;
		esac
	done
}

# Namespace holders of this data dir's pods: the pid and start time in each sandbox's holder
# file, checked against /proc so that a reused pid is left alone.
holder_pids() {
	for f in "$AGENT"/run/sandboxes/*/holder; do
		[ -f "$f" ] || continue
		read -r pid start <"$f" || continue
		# Field 22 of stat, the start time, is the 20th after the parenthesised name.
		now=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d ' ' -f 20)
		[ -n "$now" ] && [ "$now" = "$start" ] && echo "$pid"
	done
}

# The pods' cgroup directories in every hierarchy (v1 controllers and v2), from the pods'
# uids (their directories under agent/pods and agent/run/sandboxes) and the containers'
# configured cgroupsPath.
pod_cgroups() {
	{
		for d in "$AGENT"/pods/* "$AGENT"/run/sandboxes/*; do
			[ -d "$d" ] || continue
			uid=$(basename "$d" | tr - _)
			for q in "" burstable/ besteffort/; do
				echo "/kubepods/${q}pod$uid"
			done
		done
		for c in "$AGENT"/containers/*/config.json; do
			[ -f "$c" ] || continue
			path=$(sed -n 's/.*"cgroupsPath"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$c")
			[ -n "$path" ] && dirname "$path"
		done
	} | sort -u | while read -r rel; do
		for h in /sys/fs/cgroup /sys/fs/cgroup/*; do
			[ -d "$h$rel" ] && echo "$h$rel"
		done
	done
}

kill_pids() { # signal pid...
	sig=$1
	shift
	[ $# -gt 0 ] && kill "-$sig" "$@" 2>/dev/null
	return 0
}

# True while one of the processes runs (a zombie, waiting for its parent, does not).
alive() {
	for pid in "$@"; do
		stat=
		{ read -r stat <"/proc/$pid/stat"; } 2>/dev/null || continue
		rest=${stat##*) }
		[ "${rest%% *}" != Z ] && return 0
	done
	return 1
}

# Waits until none of the processes runs, for at most N tenths of a second.
wait_gone() { # N pid...
	limit=$1
	shift
	n=0
	while alive "$@" && [ $n -lt "$limit" ]; do
		sleep 0.1
		n=$((n + 1))
	done
}

# k3rs itself: SIGTERM (it drains and exits), SIGKILL after 15 s.
# shellcheck disable=SC2046
set -- $(k3rs_pids)
if [ $# -gt 0 ]; then
	say "stopping k3rs (pid $*)"
	kill_pids TERM "$@"
	wait_gone 150 "$@"
	kill_pids KILL "$@"
fi

# Every process in the pods' cgroups (containers and what was exec'd into them), until none
# is left (a dying process may have forked).
cgroups=$(pod_cgroups)
i=0
while [ -n "$cgroups" ] && [ $i -lt 50 ]; do
	# shellcheck disable=SC2046,SC2086
	set -- $(for cg in $cgroups; do find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u)
	[ $# -gt 0 ] || break
	[ $i -eq 0 ] && say "killing the pods' containers ($# processes)"
	kill_pids KILL "$@"
	sleep 0.1
	i=$((i + 1))
done

# The shims (they exit by themselves once their container is gone) and the holders.
# shellcheck disable=SC2046
set -- $(shim_pids) $(holder_pids)
if [ $# -gt 0 ]; then
	say "killing container shims and pod namespace holders (pid $*)"
	kill_pids KILL "$@"
fi
wait_gone 50 "$@"

# Mounts under the data dir (volumes, and anything else k3rs mounted there), deepest first.
# mountinfo writes space, tab, newline and backslash in octal.
mounts_under() {
	cut -d ' ' -f 5 /proc/self/mountinfo | while read -r m; do
		m=$(printf '%b' "$(printf '%s' "$m" | sed 's/\\\([0-7][0-7][0-7]\)/\\0\1/g')")
		case "$m" in
		"$1" | "$1"/*) echo "$m" ;;
		esac
	done | sort -r
}
mounts_under "$K3RS_DATA_DIR" | while read -r m; do
	say "umount $m"
	umount "$m" 2>/dev/null || umount -l "$m" || true
done

# The pods' cgroups, children first.
for cg in $cgroups; do
	find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# Network: the nftables tables and the bridge with its ports (a veth goes with its pod's
# namespace, but one left behind is removed too).
printf '%s\n' "$NFT_TABLES" | while read -r family table; do
	if nft list table "$family" "$table" >/dev/null 2>&1; then
		say "nft delete table $family $table"
		nft delete table "$family" "$table"
	fi
done
if ip link show "$BRIDGE" >/dev/null 2>&1; then
	ip -o link show master "$BRIDGE" | while read -r _ iface _; do
		iface=${iface%%@*}
		iface=${iface%:}
		say "ip link delete $iface"
		ip link delete "$iface" 2>/dev/null || true
	done
	say "ip link delete $BRIDGE"
	ip link delete "$BRIDGE"
fi
exit 0
EOF
	} >"$KILLALL_SH.tmp"
	chmod 755 "$KILLALL_SH.tmp"
	mv -f "$KILLALL_SH.tmp" "$KILLALL_SH"
}

create_uninstall() {
	info "Writing $UNINSTALL_SH"
	{
		cat <<'EOF'
#!/bin/sh
# k3rs-uninstall.sh: removes k3rs from this machine: runs k3rs-killall.sh (so nothing of it
# runs any more), disables the service, then removes every file the installer wrote (the
# binary, the kubectl link, the unit or init script and its environment file, both
# scripts), /etc/k3rs (configuration and the admin kubeconfig), the data dir (datastore,
# certificates, images, pods) and the logs of the data dir's pods. Written by the k3rs
# installer.
set -eu
EOF
		script_settings K3RS_BIN BIN_DIR ETC_DIR SERVICE_FILE ENV_FILE LOG_FILE PID_FILE KILLALL_SH UNINSTALL_SH MANAGE
		cat <<'EOF'

[ "$(id -u)" -eq 0 ] || {
	echo "k3rs-uninstall.sh: run it as root" >&2
	exit 1
}
say() { echo "k3rs-uninstall: $*"; }

if [ -x "$KILLALL_SH" ]; then
	"$KILLALL_SH"
else
	echo "k3rs-uninstall.sh: $KILLALL_SH is missing, so k3rs may still run: not uninstalling" >&2
	exit 1
fi
K3RS_DATA_DIR=${K3RS_DATA_DIR%/}
case "$K3RS_DATA_DIR" in
/?*) ;;
*)
	echo "k3rs-uninstall.sh: refusing to remove data dir '$K3RS_DATA_DIR'" >&2
	exit 1
	;;
esac

case "$MANAGE" in
systemd)
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable k3rs >/dev/null 2>&1 || true
		systemctl reset-failed k3rs >/dev/null 2>&1 || true
	fi
	;;
openrc)
	rc-update delete k3rs default >/dev/null 2>&1 || true
	;;
esac
for f in "$SERVICE_FILE" "$ENV_FILE"; do
	[ -n "$f" ] && rm -f "$f"
done
if [ "$MANAGE" = systemd ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi

# kubectl, when it is the installer's link to k3rs.
if [ -L "$BIN_DIR/kubectl" ] && [ "$(readlink "$BIN_DIR/kubectl")" = k3rs ]; then
	rm -f "$BIN_DIR/kubectl"
fi

# Nothing may be mounted under the data dir any more: rm would reach into the mounts.
cut -d ' ' -f 5 /proc/self/mountinfo | while read -r m; do
	case "$m" in
	"$K3RS_DATA_DIR" | "$K3RS_DATA_DIR"/*)
		echo "k3rs-uninstall.sh: $m is still mounted; not removing $K3RS_DATA_DIR" >&2
		exit 1
		;;
	esac
done || exit 1
# The logs of this data dir's pods (/var/log/pods/<namespace>_<pod>_<uid>).
for d in "$K3RS_DATA_DIR"/agent/pods/*; do
	[ -d "$d" ] || continue
	uid=$(basename "$d")
	for l in /var/log/pods/*_"$uid"; do
		[ -d "$l" ] && rm -rf "$l"
	done
done

say "removing $K3RS_DATA_DIR, $ETC_DIR and $K3RS_BIN"
rm -rf "$K3RS_DATA_DIR" "$ETC_DIR"
rm -f "$LOG_FILE" "$PID_FILE" "$K3RS_BIN" "$KILLALL_SH" "$UNINSTALL_SH"
EOF
	} >"$UNINSTALL_SH.tmp"
	chmod 755 "$UNINSTALL_SH.tmp"
	mv -f "$UNINSTALL_SH.tmp" "$UNINSTALL_SH"
}

# --- enable and start -----------------------------------------------------------------------

enable_and_start() {
	if [ "$MANAGE" = none ]; then
		if [ -n "$ROOT" ]; then
			info "Installed into $ROOT: no service manager is asked to enable or start k3rs"
		else
			info "No service manager: start k3rs with $K3RS_BIN $CMD"
		fi
		return
	fi
	is_true "${INSTALL_K3RS_SKIP_ENABLE:-}" && return
	case "$MANAGE" in
	systemd)
		info "systemd: enabling k3rs"
		systemctl daemon-reload
		systemctl enable k3rs >/dev/null
		;;
	openrc)
		info "openrc: enabling k3rs in the default runlevel"
		rc-update add k3rs default >/dev/null
		;;
	esac
	is_true "${INSTALL_K3RS_SKIP_START:-}" && return
	if [ "$PRE_INSTALL_HASHES" = "$(installed_hashes)" ] && ! is_true "${INSTALL_K3RS_FORCE_RESTART:-}"; then
		info "Nothing changed: not restarting k3rs"
		return
	fi
	# A restart stops only the k3rs process (KillMode=process; rc_cgroup_cleanup=no): pods
	# keep running and the new k3rs adopts them.
	case "$MANAGE" in
	systemd)
		info "systemd: starting k3rs"
		systemctl restart k3rs
		;;
	openrc)
		info "openrc: starting k3rs"
		"$SERVICE_FILE" restart
		;;
	esac
}

download_and_verify
create_symlinks
create_killall
create_uninstall
create_env_file
case "$INIT" in
systemd) create_systemd_unit "$@" ;;
openrc) create_openrc_service "$@" ;;
esac
enable_and_start

#!/usr/bin/env bash
# Checks that the README's set-up works on a fresh Debian 12, as a new user would meet it.
#
# Builds a clean Debian 12 (bookworm) root with debootstrap, from the apt mirror this machine
# is configured with; bind-mounts the host's Rust toolchain read-only; installs only gcc,
# libc6-dev, make, git, python3 and python3-pip; copies in the committed tree (HEAD, as
# `git archive` gives it: uncommitted changes are not checked); then runs the README's two
# commands inside it:
#   scripts/server.sh --build-only      (the build part of starting the server)
#   scripts/test.sh --unit              (the test suite limited to the unit tests)
# Its last line is `fresh machine: ok`, or says what failed. Needs root. Takes a while
# (a release build and a debug build from nothing): run it before closing any change to
# dependencies or set-up (see README.md, Contributing); CI does not run it.
#
# Options: --keep leaves the root in place afterwards (it is removed by default);
#          --root DIR builds the root there (default: a new directory under /var/tmp).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
keep=false
root=""
while (($#)); do
  case $1 in
    --keep) keep=true ;;
    --root) root=$2; shift ;;
    *) echo "check-fresh-machine: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

fail() {
  echo "fresh machine: FAILED: $*"
  exit 1
}

[[ $(id -u) -eq 0 ]] || fail "needs root (debootstrap, chroot and mounts)"

# The host's toolchain: the one `cargo` runs here, found through rustc's sysroot.
sysroot=$(rustc --print sysroot) || fail "no Rust toolchain on this machine"
[[ -x $sysroot/bin/cargo ]] || fail "no cargo in $sysroot/bin"

if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
    fail "cannot install debootstrap"
fi

# The Debian mirror this machine's apt uses (deb822 sources, or the one-line format).
mirror=$(
  shopt -s nullglob
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' || true; } |
    grep -v -e security -e updates | grep '/debian/\?$' | head -1 || true
)
[[ -n $mirror ]] || fail "no Debian mirror found in /etc/apt/sources.list*"

if [[ -z $root ]]; then
  root=$(mktemp -d /var/tmp/k3rs-fresh.XXXXXX)
fi
mounts=()
cleanup() {
  local m
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    m=${mounts[i]}
    umount -l "$m" 2>/dev/null || true
  done
  if ! $keep; then
    rm -rf --one-file-system "$root"
  else
    echo "check-fresh-machine: the root is kept at $root" >&2
  fi
}
trap cleanup EXIT

bind() { # bind SRC DST [ro]
  mkdir -p "$root$2"
  mount --bind "$1" "$root$2"
  mounts+=("$root$2")
  if [[ ${3:-} == ro ]]; then
    mount -o remount,bind,ro "$root$2"
  fi
}

log=$root.log
echo "check-fresh-machine: debootstrap bookworm from $mirror into $root (log: $log)" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$log" 2>&1 ||
  fail "debootstrap bookworm from $mirror (see $log)"

# The root is a mount point of its own, as / is on a real machine (k3rs' tests look for it
# in the mount table).
mount --bind "$root" "$root"
mounts+=("$root")

# --- What this workplace needs to reach the package registries: a local certificate
# --- authority (the host's bundle holds it) and pip settings (PIP_*). The bundle goes where
# --- Debian's ca-certificates will not rewrite it, and every client is pointed at it. A
# --- machine that reaches the registries directly needs none of this.
ca=/usr/local/share/k3rs-check/ca-certificates.crt
mkdir -p "$root$(dirname "$ca")"
cp /etc/ssl/certs/ca-certificates.crt "$root$ca"
pass_env=(SSL_CERT_FILE="$ca" CURL_CA_BUNDLE="$ca" REQUESTS_CA_BUNDLE="$ca" CARGO_HTTP_CAINFO="$ca" PIP_CERT="$ca")
while IFS= read -r var; do
  [[ $var == PIP_CERT ]] || pass_env+=("$var=${!var}")
done < <(compgen -e | grep -E '^PIP_[A-Z_]+$' || true)
# --- End of the workplace-specific part.

cp /etc/resolv.conf "$root/etc/resolv.conf"
bind /proc /proc
bind /sys /sys
bind /dev /dev
bind /dev/pts /dev/pts
bind "$sysroot" /opt/rust ro
mkdir -p "$root/src/k3rs"
git -C "$repo" archive HEAD | tar -x -C "$root/src/k3rs" || fail "cannot copy the committed tree"

in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/root/.cargo "${pass_env[@]}" "$@"
}

echo "check-fresh-machine: installing gcc libc6-dev make git python3 python3-pip" >&2
in_root sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  gcc libc6-dev make git python3 python3-pip' >>"$log" 2>&1 ||
  fail "installing the base packages in the root (see $log)"

echo "check-fresh-machine: scripts/server.sh --build-only" >&2
in_root sh -c 'cd /src/k3rs && scripts/server.sh --build-only' >>"$log" 2>&1 ||
  fail "scripts/server.sh --build-only (see the end of $log)"

echo "check-fresh-machine: scripts/test.sh --unit" >&2
in_root sh -c 'cd /src/k3rs && scripts/test.sh --unit' >>"$log" 2>&1 ||
  fail "scripts/test.sh --unit (see the end of $log)"

grep -E '^test result: ' "$log" | tail -3 >&2 || true
echo "fresh machine: ok"

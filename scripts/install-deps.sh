#!/usr/bin/env bash
# Installs the Debian packages k3rs needs to build, run and test. Idempotent: when every
# package is already installed it changes nothing and does not touch the network.
# `--bench` also installs the peers the benchmarks compare with (scripts/bench.sh passes it).
set -euo pipefail

bench=false
if [[ ${1:-} == --bench ]]; then
  bench=true
fi

packages=(
  libseccomp-dev    # build: libcontainer links libseccomp
  pkg-config        # build: locating system libraries
  nftables          # run: the pod network's guard rules and the service proxy are applied with `nft`
  conntrack         # run: the service proxy flushes stale UDP flows of removed endpoints
  etcd-server       # test: a real etcd to compare with and to run the etcd backend against
  etcd-client       # test: etcdctl against the etcd API socket
  busybox-static    # test: the userland of test container images
  docker-registry   # test: a real local OCI registry to pull from
  skopeo            # test: pushes test images into it
  apache2-utils     # test: htpasswd, for the registry's Basic auth
  runc              # bench: the peer runtime benches/runtime.rs compares with
  iproute2          # test: network namespaces for the end-to-end tests
  util-linux        # test: nsenter
  python3-venv      # test: the virtual environment of the Python client (below)
  curl              # test: requests through the ingress in the end-to-end tests
)
# The benchmarks' peers and load generators. nginx and unbound are servers: a fresh install
# starts them as system services on ports 80 and 53, so services of packages installed here
# are stopped and disabled (the benchmarks start their own instances).
bench_packages=(
  wrk               # bench: load through the ingress (scripts/bench.sh net-ingress)
  nginx-light       # bench: the peer proxy the ingress is compared with
  dnsperf           # bench: load on the cluster DNS (scripts/bench.sh net-dns)
  unbound           # bench: the peer resolver the cluster DNS is compared with
)
# package=service, for the servers above
bench_services=(nginx-light=nginx unbound=unbound)
if $bench; then
  packages+=("${bench_packages[@]}")
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  fi
fi

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 && ${#as_root[@]} -eq 0 ]]; then
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update
  "${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
  if $bench && [[ -d /run/systemd/system ]]; then
    for pair in "${bench_services[@]}"; do
      # Only the services of packages installed just now: a server the user had stays.
      if [[ " ${missing[*]} " == *" ${pair%%=*} "* ]]; then
        "${as_root[@]}" systemctl disable --now "${pair#*=}" >/dev/null 2>&1 || true
      fi
    done
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install Rust 1.85 or newer (https://rustup.rs)" >&2
  exit 1
fi

# test: the official Kubernetes Python client, a second judge of API compatibility. It goes
# into a virtual environment of its own: Debian's Python is externally managed (PEP 668), so
# a system-wide `pip install` is refused there. The tests run scripts with this venv's python
# (K3RS_TEST_PYTHON, exported by scripts/test.sh).
venv=${K3RS_PYTHON_VENV:-/var/cache/k3rs/python}
if ! "$venv/bin/python3" -c 'import kubernetes' >/dev/null 2>&1; then
  echo "install-deps: installing the kubernetes Python client into $venv" >&2
  "${as_root[@]}" mkdir -p "$(dirname "$venv")"
  "${as_root[@]}" python3 -m venv "$venv"
  "${as_root[@]}" "$venv/bin/python3" -m pip install --quiet kubernetes
fi

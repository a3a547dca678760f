#!/usr/bin/env bash
# The cluster DNS against unbound, in one run on this machine (root), measured with dnsperf:
# queries/s and p99 latency
#   - for cluster names (100 Services; unbound holds the same records as local data),
#   - for forwarded names, answered from cache (both forward `example.` to a second unbound,
#     the "outside" resolver, and are warmed first),
#   - for cluster names while 100 other Services are created and deleted in a loop (through
#     the API for k3rs; with unbound-control local_datas/local_datas_remove for unbound).
# Everything runs in a network namespace of its own. unbound runs with as many threads as
# k3rs has workers (2 on this machine) and no DNSSEC validation (k3rs does none).
#   K3RS_BIN          the k3rs binary (default: a release build, made by scripts/bench.sh)
#   BENCH_DURATION    dnsperf's seconds per run (default 15)
set -euo pipefail

k3rs=${K3RS_BIN:?set K3RS_BIN to the k3rs binary}
duration=${BENCH_DURATION:-15}
node=192.168.79.1     # the node's address
outside=192.168.79.2  # the outside resolver (unbound), which both forward example. to
peer=192.168.79.3     # unbound, the peer
k3rs_dns=10.42.0.1    # the cluster DNS listens on the pod bridge's gateway
# shellcheck source=scripts/bench_netns.sh
. "$(dirname "$0")/bench_netns.sh"
bench_setup dns "$node"
in_ns ip addr add "$outside/24" dev "$peer_if"
in_ns ip addr add "$peer/24" dev "$peer_if"
in_ns ip route add default via 192.168.79.254

unbound_conf() { # name, address, extra server lines, extra sections
  cat >"$work/$1.conf" <<EOF
server:
  interface: $2
  port: 53
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: "$work/$1.pid"
  do-daemonize: no
  use-syslog: no
  logfile: "$work/$1.log"
  verbosity: 0
  num-threads: 2
  so-reuseport: yes
  access-control: 0.0.0.0/0 allow
  module-config: "iterator"
  do-not-query-localhost: no
  qname-minimisation: no
$3
$4
EOF
}

# The outside resolver: example. with 100 names.
{
  echo '  local-zone: "example." static'
  for i in $(seq 0 99); do echo "  local-data: \"host$i.example. 3600 IN A 198.51.100.$((i + 1))\""; done
} >"$work/outside-zone"
unbound_conf outside "$outside" "$(cat "$work/outside-zone")" ""
bench_serve unbound -c "$work/outside.conf"

# k3rs, forwarding to the outside resolver.
echo "nameserver $outside" >"$work/resolv.conf"
bench_k3rs "$node" --resolv-conf "$work/resolv.conf" --disable ingress

services() { # prefix, count: Service manifests, selector-less (their records need no pods)
  for i in $(seq 0 $(($2 - 1))); do
    printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: %s%d}\nspec: {ports: [{port: 80}]}\n' "$1" "$i"
  done
}
services svc- 100 | in_ns kubectl apply -f - >/dev/null
services churn- 100 >"$work/churn.yaml"
# The same records for unbound, and the query files.
in_ns kubectl get services -o jsonpath='{range .items[*]}{.metadata.name} {.spec.clusterIP}{"\n"}{end}' |
  grep '^svc-' >"$work/records"
{
  echo '  local-zone: "cluster.local." static'
  while read -r name addr; do echo "  local-data: \"$name.default.svc.cluster.local. 5 IN A $addr\""; done <"$work/records"
} >"$work/cluster-zone"
awk '{print $1 ".default.svc.cluster.local A"}' "$work/records" >"$work/q-cluster"
for i in $(seq 0 99); do echo "host$i.example A"; done >"$work/q-forwarded"
# unbound's churn: the same 100 names added and removed.
for i in $(seq 0 99); do echo "churn-$i.default.svc.cluster.local. 5 IN A 10.43.200.$((i + 1))"; done >"$work/churn-data"
awk '{print $1}' "$work/churn-data" >"$work/churn-names"

unbound_conf peer "$peer" "$(cat "$work/cluster-zone")" "remote-control:
  control-enable: yes
  control-interface: $work/peer.ctl
  control-use-cert: no
forward-zone:
  name: \"example.\"
  forward-addr: $outside"
bench_serve unbound -c "$work/peer.conf"

# Both answer before anything is measured.
for server in "$k3rs_dns" "$peer"; do
  for _ in $(seq 300); do
    if in_ns dnsperf -s "$server" -d "$work/q-cluster" -n 1 -t 1 2>/dev/null | grep -q 'Queries completed: *100 '; then break; fi
    sleep 0.2
  done
  in_ns dnsperf -s "$server" -d "$work/q-cluster" -n 1 | grep -q 'Queries completed: *100 ' ||
    { echo "$server does not answer" >&2; cat "$work/server.log" >&2; exit 1; }
  # Warm the caches of forwarded names.
  in_ns dnsperf -s "$server" -d "$work/q-forwarded" -n 2 >/dev/null
done

# dnsperf's queries/s, the share answered NOERROR, and the p99 of its per-query latencies.
run() { # server, query file, label, server name
  local out qps p99 ok
  out=$(in_ns dnsperf -s "$1" -d "$2" -l "$duration" -v)
  qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
  ok=$(sed -n 's/.*Response codes: *//p' <<<"$out")
  p99=$(awk '$1 == ">" && $2 != "T" {print $NF}' <<<"$out" | sort -g | awk '{a[NR] = $1} END {i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f ms", a[i] * 1000}')
  printf '%-16s %-8s %12s %10s  %s\n' "$3" "$4" "$qps" "$p99" "${ok:-}"
}

churn_k3rs() {
  while :; do
    in_ns kubectl apply -f "$work/churn.yaml" >/dev/null 2>&1
    in_ns kubectl delete -f "$work/churn.yaml" --wait=false >/dev/null 2>&1
  done
}
churn_unbound() {
  while :; do
    in_ns unbound-control -c "$work/peer.conf" local_datas <"$work/churn-data" >/dev/null 2>&1
    in_ns unbound-control -c "$work/peer.conf" local_datas_remove <"$work/churn-names" >/dev/null 2>&1
  done
}
churning() { # churn function, then the run's arguments
  local f=$1
  shift
  $f &
  local c=$!
  run "$@"
  kill "$c" 2>/dev/null || true
  wait "$c" 2>/dev/null || true
}

printf '%-16s %-8s %12s %10s  %s\n' names server queries/s p99 'response codes'
run "$k3rs_dns" "$work/q-cluster" cluster k3rs
run "$peer" "$work/q-cluster" cluster unbound
run "$k3rs_dns" "$work/q-forwarded" forwarded k3rs
run "$peer" "$work/q-forwarded" forwarded unbound
churning churn_k3rs "$k3rs_dns" "$work/q-cluster" 'cluster, churn' k3rs
churning churn_unbound "$peer" "$work/q-cluster" 'cluster, churn' unbound

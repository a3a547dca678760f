#!/usr/bin/env bash
# The ingress against nginx, in one run on this machine (root): both proxy to the same
# backend (a second nginx, serving a small static page), measured with wrk over HTTP and
# HTTPS.
# Everything runs in a network namespace of its own, so ports 80 and 443 are free.
#   K3RS_BIN          the k3rs binary (default: a release build, made by scripts/bench.sh)
#   BENCH_DURATION    wrk's duration per run (default 20s)
#   BENCH_CONNECTIONS wrk's connections (default 64), BENCH_THREADS (default 2)
set -euo pipefail

k3rs=${K3RS_BIN:?set K3RS_BIN to the k3rs binary}
duration=${BENCH_DURATION:-20s}
conns=${BENCH_CONNECTIONS:-64}
threads=${BENCH_THREADS:-2}
ip=192.168.78.1
# shellcheck source=scripts/bench_netns.sh
. "$(dirname "$0")/bench_netns.sh"
stop_nginx() {
  for pidfile in "$work/nginx.pid" "$work/backend.pid"; do
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
}
bench_extra_cleanup=stop_nginx
bench_setup ingress "$ip"

# A self-signed certificate for nginx' HTTPS listener.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench.local \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
mkdir -p "$work/www" "$work/nginx"
printf 'hello from the backend\n' >"$work/www/index.html"
# The backend: an nginx of its own on :8081, serving the page. It is a process apart from
# both proxies, so that each proxy's requests cross to another process as they do in a
# cluster (with the backend inside the peer nginx, its workers would answer their own
# upstream requests without ever handing over to another process). It keeps connections
# open for both proxies alike (nginx closes one after 1,000 requests by default).
cat >"$work/backend.conf" <<EOF
user root root;
worker_processes auto;
pid $work/backend.pid;
error_log $work/nginx/backend-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen $ip:8081; root $work/www; }
}
EOF
in_ns nginx -c "$work/backend.conf"
# nginx as the peer proxy on :8080 (HTTP) and :8443 (HTTPS), with upstream keep-alive as
# ingress-nginx configures it.
cat >"$work/nginx.conf" <<EOF
user root root;
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  upstream backend { server $ip:8081; keepalive 320; }
  server {
    listen $ip:8080;
    listen $ip:8443 ssl;
    ssl_certificate $work/tls.crt;
    ssl_certificate_key $work/tls.key;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
in_ns nginx -c "$work/nginx.conf"

bench_k3rs "$ip"
in_ns kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-1, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
endpoints: [{addresses: ['$ip'], conditions: {ready: true}}]
ports: [{name: http, port: 8081, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: backend}
spec:
  rules:
  - host: bench.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: backend, port: {name: http}}}}
EOF
for _ in $(seq 300); do
  if in_ns curl -sf -H 'Host: bench.local' "http://$ip/" >/dev/null; then break; fi
  sleep 0.2
done
in_ns curl -sf -H 'Host: bench.local' "http://$ip/" >/dev/null || { echo "the ingress does not answer" >&2; cat "$work/server.log" >&2; exit 1; }

# wrk's Requests/sec and 99th percentile latency.
run() {
  local out
  out=$(in_ns wrk -t"$threads" -c"$conns" -d"$duration" --latency -H 'Host: bench.local' "$1")
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  printf '%-8s %-6s %12s %10s\n' "$2" "$3" "$rps" "$p99"
}

printf '%-8s %-6s %12s %10s\n' proxy scheme requests/s p99
run "http://$ip:80/" k3rs http
run "http://$ip:8080/" nginx http
run "https://$ip:443/" k3rs https
run "https://$ip:8443/" nginx https

#!/usr/bin/env bash
# Scan throughput and latency: `GET /c/{code}` on the release server (event logging on) against nginx serving
# a static `return 302` (the floor), both on loopback, measured with wrk in the same run.
# Needs Debian's wrk and nginx (apt-get install wrk nginx-light) and a release build (cargo build --release).
# Usage: evals/scan_bench.sh [DURATION_S] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20}"
CONNS="${2:-32}"
CODE="tJ6bpUpB"
WORK="$(mktemp -d)"
trap 'kill $(cat "$WORK"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT

for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install wrk nginx-light)"; exit 1; }
done
[ -x target/release/scanaid ] || { echo "error: build first: cargo build --release"; exit 1; }

# nginx: one static redirect, no access log (our server writes its events; nginx's log would be the fair
# comparison only if it were on, and a static 302 without logging is the stricter floor).
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx;
  scgi_temp_path $WORK/nginx;
  server {
    listen 127.0.0.1:18080;
    location /c/ { add_header Cache-Control no-store; return 302 https://example.org/; }
  }
}
EOF
nginx -c "$WORK/nginx/nginx.conf"

# Our server twice: the default role page, and a redirect rule for the same code.
INDEX="$WORK/index"
./target/release/scanaid index --manuals manuals --index "$INDEX" >/dev/null
cp -r manuals "$WORK/manuals-redirect"
cat > "$WORK/manuals-redirect/rules.toml" <<EOF
[[rule]]
id = "bench-redirect"
code = "$CODE"
then = { redirect = "https://example.org/" }
EOF

start_scanaid() { # name port manuals
  ./target/release/scanaid serve --addr "127.0.0.1:$2" --data "$WORK/data-$1" --index "$INDEX" --manuals "$3" \
    > "$WORK/$1.log" 2>&1 &
  echo $! > "$WORK/$1.pid"
  for _ in $(seq 1 100); do grep -q "listening" "$WORK/$1.log" && return 0; sleep 0.2; done
  echo "error: scanaid did not start"; cat "$WORK/$1.log"; exit 1
}
start_scanaid page 18081 manuals
start_scanaid redirect 18082 "$WORK/manuals-redirect"
# The web stack alone (axum, hyper, tokio as `serve` runs them), answering the same 302 and nothing
# else: how much of the gap to nginx is the framework's.
./target/release/scanaid bench http-floor --addr 127.0.0.1:18083 > "$WORK/floor.log" 2>&1 &
echo $! > "$WORK/floor.pid"
for _ in $(seq 1 50); do grep -q "listening" "$WORK/floor.log" && break; sleep 0.1; done

run() { # label url
  echo "== $1"
  # Warm-up, not measured: the first seconds after start pay for page faults, allocator growth and
  # first renders (a cold run's p99 was 65-107 ms against 4 ms warm, at the same rate).
  wrk -t2 -c"$CONNS" -d5s "$2" > /dev/null
  wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$2" | tee "$WORK/$1.wrk" | grep -E "requests in|Requests/sec|50%|99%|Non-2xx|Socket errors" || true
}
run nginx-302 "http://127.0.0.1:18080/c/$CODE"
run axum-302 "http://127.0.0.1:18083/c/$CODE"
run scanaid-redirect "http://127.0.0.1:18082/c/$CODE"
run scanaid-page "http://127.0.0.1:18081/c/$CODE"

for name in page redirect; do
  kill -TERM "$(cat "$WORK/$name.pid")"
  while kill -0 "$(cat "$WORK/$name.pid")" 2>/dev/null; do sleep 0.2; done
  rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from scan_events').fetchone()[0])" "$WORK/data-$name/scanaid.db")
  echo "scanaid-$name: $rows scan events written (warm-up included)"
done

#!/usr/bin/env bash
# Operations check: `rabbit-rpc serve fib --http` as Prometheus sees it,
# with Debian's prometheus package (promtool and a real server).
#
#   L  the scrape passes `promtool check metrics` (format, names, help)
#   S  a Prometheus server scraping it every second sees the calls made:
#      rpc_server_call_duration_seconds_count is 20 for code ok and 1 for
#      invalid_argument on our queue, and `up` is 1
#
# Needs a RabbitMQ broker on 127.0.0.1:5672 (guest/guest), or AMQP_URL.
# Installs Debian's prometheus package with apt-get if promtool or
# prometheus is missing (sudo unless root); runs its server on a free port
# of its own, with its data in a temporary directory (no service is
# started). Builds our binary with cargo unless RABBIT_RPC_BIN points to
# one.
#
# Prints `ok: …` / `FAIL: …` per check and ends with
# `interop: N passed, M failed`; exits non-zero if anything failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
QUEUE="interop.prometheus.$$.$RANDOM"
CALLS=20

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

# --- setup -------------------------------------------------------------------

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    say "installing Debian's prometheus package ..."
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >&2 ||
        die "apt-get install prometheus failed"
fi

build_ours "$REPO"
work="$(mktemp -d "${TMPDIR:-/tmp}/interop-prometheus.XXXXXX")"
queues=("$QUEUE")

# http GET URL: the body, or nothing (exit 1) when the server does not answer.
get() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_ours ours "$QUEUE" --http 127.0.0.1:0 || die "rabbit-rpc serve fib --http did not start"
endpoint="$(sed -n 's|.*metrics and probes on http://\([0-9.:]*\):.*|\1|p' "$work/ours.log" | head -n 1)"
[ -n "$endpoint" ] || die "no 'metrics and probes on http://…' line in rabbit-rpc's log"
say "rabbit-rpc's endpoint: http://$endpoint"

for _ in $(seq "$CALLS"); do
    bounded 30 "$work/call.out" "$work/call.err" "$BIN" call --queue "$QUEUE" 20 ||
        die "rabbit-rpc call failed: $(cat "$work/call.err")"
done
bounded 30 "$work/call.out" "$work/call.err" "$BIN" call --queue "$QUEUE" -- -1 || true

# --- L: promtool -----------------------------------------------------------------

get "http://$endpoint/metrics" >"$work/scrape.txt" || die "GET /metrics failed"
if promtool check metrics <"$work/scrape.txt" >"$work/promtool.out" 2>&1; then
    ok "L: promtool check metrics passes on /metrics ($(grep -c '^# TYPE' "$work/scrape.txt") metric families)"
else
    fail "L: promtool check metrics:"
    show <"$work/promtool.out"
fi

# --- S: a Prometheus server scraping it --------------------------------------------

port="$(free_port)"
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: rabbit-rpc
    static_configs:
      - targets: ['$endpoint']
YAML
launch prometheus "Server is ready to receive web requests" "prometheus on 127.0.0.1:$port" \
    prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$port" || die "prometheus did not start"

# value QUERY: the first sample's value of an instant query, or nothing.
value() {
    get "http://127.0.0.1:$port/api/v1/query?query=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1")" |
        python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}
ok_query="rpc_server_call_duration_seconds_count{rpc_method=\"$QUEUE\",rpc_response_status_code=\"ok\"}"
error_query="rpc_server_call_duration_seconds_count{rpc_method=\"$QUEUE\",rpc_response_status_code=\"invalid_argument\"}"
deadline=$((SECONDS + 30))
seen_ok="" seen_error="" up=""
while ((SECONDS < deadline)); do
    seen_ok="$(value "$ok_query" 2>/dev/null || true)"
    seen_error="$(value "$error_query" 2>/dev/null || true)"
    up="$(value "up{job=\"rabbit-rpc\"}" 2>/dev/null || true)"
    [ "$seen_ok" = "$CALLS" ] && [ "$seen_error" = 1 ] && [ "$up" = 1 ] && break
    sleep 0.5
done
if [ "$seen_ok" = "$CALLS" ] && [ "$seen_error" = 1 ] && [ "$up" = 1 ]; then
    ok "S: a Prometheus server scraping /metrics sees $seen_ok calls answered ok and $seen_error invalid_argument on our queue (up = 1)"
else
    fail "S: after 30 s Prometheus saw ok='$seen_ok' (want $CALLS), invalid_argument='$seen_error' (want 1), up='$up' (want 1); its log:"
    show <"$work/prometheus.log"
fi

stop "$ours_pid" 10
summary
((failed == 0))

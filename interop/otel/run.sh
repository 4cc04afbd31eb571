#!/usr/bin/env bash
# Tracing check: one trace across the broker, with OpenTelemetry's own
# instrumentation of pika on the other side (opentelemetry-instrumentation-
# pika from PyPI), and our spans exported over OTLP/HTTP to a stand-in
# collector (receiver.py, which decodes them with opentelemetry-proto).
#
#   T  today's tutorial client in Python, traced by the pika instrumentation,
#      calls `rabbit-rpc serve fib` (run with OTEL_EXPORTER_OTLP_ENDPOINT):
#      our server span is in the client's trace, a child of its publish
#      span (not a link), kind server, with rpc.method, messaging.system,
#      the conversation id and the response code
#   R  the reply carries `traceparent` in the same trace, naming our server
#      span, so the client can go on with it
#   C  `rabbit-rpc call` (with the same environment) against it: our client
#      span (kind client) and the server span its child, one trace
#   O  without the OpenTelemetry environment nothing is exported and the
#      reply carries no `traceparent`
#
# Needs a RabbitMQ broker on 127.0.0.1:5672 (guest/guest), or AMQP_URL, and
# Python 3 with venv; installs pika, opentelemetry-sdk,
# opentelemetry-instrumentation-pika and opentelemetry-proto into
# target/interop/otel-venv. Builds our binary with cargo unless
# RABBIT_RPC_BIN points to one.
#
# Prints `ok: …` / `FAIL: …` per check and ends with
# `interop: N passed, M failed`; exits non-zero if anything failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$REPO/target/interop/otel-venv"
QUEUE="interop.otel.$$.$RANDOM"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

# --- setup -------------------------------------------------------------------

if [ ! -x "$VENV/bin/python" ]; then
    say "making a Python venv in $VENV ..."
    python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
PYTHON="$VENV/bin/python"
if ! "$PYTHON" -c 'import pika, opentelemetry.sdk, opentelemetry.instrumentation.pika, opentelemetry.proto' 2>/dev/null; then
    say "installing pika and OpenTelemetry's SDK, pika instrumentation and protocol from PyPI ..."
    "$PYTHON" -m pip install -q pika opentelemetry-sdk opentelemetry-instrumentation-pika \
        opentelemetry-proto >&2 || die "pip install failed"
fi

build_ours "$REPO"
work="$(mktemp -d "${TMPDIR:-/tmp}/interop-otel.XXXXXX")"
queues=("$QUEUE" "$QUEUE.off")

"$PYTHON" "$HERE/receiver.py" "$work/port" "$work/spans.jsonl" 2>"$work/receiver.log" &
pids+=("$!")
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || die "the stand-in collector did not start: $(cat "$work/receiver.log")"
collector="http://127.0.0.1:$(cat "$work/port")"
say "stand-in collector at $collector"

# spans FILTER: the collected spans (JSON lines) for which the Python
# expression FILTER on `s` holds, as a JSON list.
spans() {
    python3 -c '
import json, sys
spans = [json.loads(line) for line in open(sys.argv[1])]
print(json.dumps([s for s in spans if eval(sys.argv[2])]))' "$work/spans.jsonl" "$1"
}
# field JSON EXPRESSION: a Python expression on the parsed JSON `j`.
field() { python3 -c 'import json, sys; j = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

# --- T, R: a traced pika client -> our server ----------------------------------------

OTEL_EXPORTER_OTLP_ENDPOINT="$collector" OTEL_SERVICE_NAME=fib-server OTEL_BSP_SCHEDULE_DELAY=100 \
    start_ours traced "$QUEUE" || die "rabbit-rpc serve fib did not start"
rc=0
bounded 60 "$work/client.out" "$work/client.err" "$PYTHON" "$HERE/client.py" "$QUEUE" 30 || rc=$?
((rc == 0)) || die "the traced pika client failed (exit $rc): $(tail -n 5 "$work/client.err")"
client="$(tail -n 1 "$work/client.out")"
# Our own client too, exporting with the same environment.
OTEL_EXPORTER_OTLP_ENDPOINT="$collector" OTEL_SERVICE_NAME=fib-caller OTEL_BSP_SCHEDULE_DELAY=100 \
    bounded 60 "$work/call.out" "$work/call.err" "$BIN" call --queue "$QUEUE" 25 || true
stop "$ours_pid" 10 # flushes its batch of spans

trace_id="$(field "$client" 'j["publish"]["trace_id"]')"
publish_id="$(field "$client" 'j["publish"]["span_id"]')"
correlation="$(field "$client" 'j["correlation_id"]')"
server="$(spans "s['service'] == 'fib-server' and s['trace_id'] == '$trace_id'")"
if [ "$(field "$server" 'len(j)')" = 1 ] &&
    [ "$(field "$server" 'j[0]["parent_span_id"]')" = "$publish_id" ] &&
    [ "$(field "$server" 'j[0]["kind"]')" = server ] &&
    [ "$(field "$server" 'j[0]["attributes"].get("rpc.method")')" = "$QUEUE" ] &&
    [ "$(field "$server" 'j[0]["attributes"].get("messaging.system")')" = rabbitmq ] &&
    [ "$(field "$server" 'j[0]["attributes"].get("messaging.message.conversation_id")')" = "$correlation" ] &&
    [ "$(field "$server" 'j[0]["attributes"].get("rpc.response.status_code")')" = ok ] &&
    [ "$(field "$client" 'j["body"]')" = 832040 ]; then
    ok "T: pika's publish span ($(field "$client" 'j["publish"]["name"]'), $(field "$client" 'j["publish"]["kind"]')) -> our server span, its child in trace $trace_id (kind server, rpc.method, messaging.system rabbitmq, conversation id, code ok)"
else
    fail "T: no server span in the client's trace as the publish span's child; client: $client; our spans:"
    spans "s['service'] == 'fib-server'" | show
fi
server_id="$(field "$server" 'j[0]["span_id"] if j else ""')"
traceparent="$(field "$client" 'j["traceparent"]')"
if [ "$traceparent" = "00-$trace_id-$server_id-01" ]; then
    ok "R: the reply carries traceparent $traceparent: the same trace, our server span"
else
    fail "R: the reply's traceparent is '$traceparent', want 00-$trace_id-$server_id-01"
fi
caller="$(spans "s['service'] == 'fib-caller' and s['kind'] == 'client'")"
if [ "$(field "$caller" 'len(j)')" = 1 ]; then
    call_trace="$(field "$caller" 'j[0]["trace_id"]')"
    call_span="$(field "$caller" 'j[0]["span_id"]')"
    child="$(spans "s['service'] == 'fib-server' and s['trace_id'] == '$call_trace' and s['parent_span_id'] == '$call_span'")"
    if [ "$(field "$child" 'len(j)')" = 1 ]; then
        ok "C: rabbit-rpc call's client span and our server span, its child, in one trace ($call_trace)"
    else
        fail "C: no server span child of the call's client span $call_span; our spans:"
        show <"$work/spans.jsonl"
    fi
else
    fail "C: rabbit-rpc call exported $(field "$caller" 'len(j)') client spans (want 1); its stderr:"
    show <"$work/call.err"
fi

# --- O: off ----------------------------------------------------------------------------

before="$(wc -l <"$work/spans.jsonl")"
start_ours plain "$QUEUE.off" || die "rabbit-rpc serve fib did not start"
rc=0
bounded 60 "$work/off.out" "$work/off.err" "$PYTHON" "$HERE/client.py" "$QUEUE.off" 30 || rc=$?
stop "$ours_pid" 10
off="$(tail -n 1 "$work/off.out")"
after="$(wc -l <"$work/spans.jsonl")"
if ((rc == 0)) && [ "$(field "$off" 'j["traceparent"]')" = None ] && ((after == before)) &&
    [ "$(field "$off" 'j["body"]')" = 832040 ]; then
    ok "O: without OTEL_EXPORTER_OTLP_ENDPOINT nothing is exported and the reply carries no traceparent"
else
    fail "O: off, the reply's traceparent is '$(field "$off" 'j["traceparent"]' 2>/dev/null)' and $((after - before)) spans were exported (want none): $off"
fi

summary
((failed == 0))

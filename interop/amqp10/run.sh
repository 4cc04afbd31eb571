#!/usr/bin/env bash
# Interop check: rabbit-rpc and AMQP 1.0 peers written with RabbitMQ's own
# AMQP 1.0 client for Python (rabbitmq-amqp-python-client, from PyPI), which
# correlate the AMQP 1.0 way, as RabbitMQ's Requester and Responder (Java,
# Go, .NET) do: a request carries a message-id, its reply's correlation-id
# equals it. Needs RabbitMQ 4.2 or later (AMQP 1.0 and direct reply-to
# across protocols).
#
#   A  an AMQP 1.0 requester (requester.py), replies by direct reply-to over
#      AMQP 1.0 -> `rabbit-rpc serve fib`: fib(30) = 832040, fib(10) = 55,
#      and fib(-1) an error reply whose code (rpc-status) it can read
#   B  the same requester with a reply queue of its own
#      (amqp10-requester.<uuid>) -> `rabbit-rpc serve fib --allow-reply-to
#      amqp10-requester.`: 832040
#   C  `rabbit-rpc call` -> an AMQP 1.0 responder (responder.py, fib):
#      832040
#   D  `rabbit-rpc bench` (500 calls, 20 in flight) -> the responder: every
#      call answered
#
# The broker: AMQP_URL, else the RabbitMQ 4.3 of scripts/rabbitmq4.sh
# (brought up if it is not running); the AMQP 1.0 peers connect to the same
# host, port, user and password. Installs rabbitmq-amqp-python-client into
# target/interop/python-venv. Builds our binary with cargo unless
# RABBIT_RPC_BIN points to one. Each run uses its own queues and deletes them
# afterwards.
#
# Prints `ok: …` / `FAIL: …` per check and ends with
# `interop: N passed, M failed`; exits non-zero if anything failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$REPO/target/interop/python-venv"
CLIENT_VERSION=1.0.1
QUEUE="interop.amqp10.$$.$RANDOM"

if [ -z "${AMQP_URL:-}" ]; then
    "$REPO/scripts/rabbitmq4.sh" up
    while IFS= read -r setting; do export "${setting?}"; done < <("$REPO/scripts/rabbitmq4.sh" env)
fi
export AMQP_URL

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

# --- setup -------------------------------------------------------------------

if [ ! -x "$VENV/bin/python" ]; then
    say "making a Python venv in $VENV ..."
    python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
PYTHON="$VENV/bin/python"
if ! "$PYTHON" -c "import importlib.metadata as m, sys; sys.exit(m.version('rabbitmq-amqp-python-client') != '$CLIENT_VERSION')" 2>/dev/null; then
    say "installing rabbitmq-amqp-python-client $CLIENT_VERSION from PyPI ..."
    "$PYTHON" -m pip install -q "rabbitmq-amqp-python-client==$CLIENT_VERSION" >&2 ||
        die "pip install rabbitmq-amqp-python-client failed"
fi
# AMQP 1.0 names no virtual host in the URL's path: the default one, /.
case "$AMQP_URL" in
*/%2f | */%2F) export AMQP10_URL="${AMQP_URL%/*}/" ;;
*) die "AMQP_URL must name the virtual host / (…/%2f) for the AMQP 1.0 peers: $AMQP_URL" ;;
esac

build_ours "$REPO"

work="$(mktemp -d "${TMPDIR:-/tmp}/interop-amqp10.XXXXXX")"
say "queues: $QUEUE.*"
queues=("$QUEUE.ours" "$QUEUE.theirs")

# requester CHECK MODE EXPECTED BODY...: the AMQP 1.0 requester in MODE
# against our server on $QUEUE.ours must print EXPECTED (lines) and exit 0.
requester() {
    local check=$1 mode=$2 expected=$3 rc=0
    shift 3
    bounded 60 "$work/requester.out" "$work/requester.err" \
        "$PYTHON" "$HERE/requester.py" "$mode" "$QUEUE.ours" "$@" || rc=$?
    if ((rc == 0)) && printf '%s\n' "$expected" | cmp -s - "$work/requester.out"; then
        ok "$check: $(paste -sd ' ' "$work/requester.out" | cut -c1-100)"
    else
        fail "$check: expected exit 0 and:"
        printf '%s\n' "$expected" | show
        echo "    got exit $rc and:"
        show <"$work/requester.out"
        show <"$work/requester.err"
    fi
}

# --- A, B: an AMQP 1.0 requester -> rabbit-rpc serve fib ----------------------

if start_ours ours "$QUEUE.ours" --allow-reply-to amqp10-requester.; then
    requester "A: AMQP 1.0 requester (direct reply-to over AMQP 1.0) -> rabbit-rpc serve fib" \
        direct "832040
55
invalid_argument: n = -1 is out of range; expected a whole number n with 0 <= n <= 100000" 30 10 -1
    requester "B: AMQP 1.0 requester (a reply queue of its own) -> rabbit-rpc serve fib" \
        queue "832040" 30
    stop "$ours_pid" 10
fi

# --- C, D: rabbit-rpc -> an AMQP 1.0 responder ---------------------------------

if launch theirs "ready" "the AMQP 1.0 responder on $QUEUE.theirs" \
    "$PYTHON" "$HERE/responder.py" "$QUEUE.theirs"; then
    theirs_pid=$launched_pid
    call_fib30 "C: rabbit-rpc call -> AMQP 1.0 responder (correlation-id = message-id)" \
        "$work/theirs.log" "$QUEUE.theirs" --timeout 10s || true
    rc=0
    bounded 120 "$work/bench.out" "$work/bench.err" \
        "$BIN" bench --queue "$QUEUE.theirs" --calls 500 --inflight 20 --body 20 || rc=$?
    if ((rc == 0)); then
        ok "D: rabbit-rpc bench -> AMQP 1.0 responder: 500 calls, every one answered ($(grep -m1 -o '[0-9]* calls/s' "$work/bench.out"))"
    else
        fail "D: rabbit-rpc bench -> AMQP 1.0 responder: exit $rc:"
        show <"$work/bench.out"
        show <"$work/bench.err"
    fi
    stop "$theirs_pid" 3
fi

summary
((failed == 0))

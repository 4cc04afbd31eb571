#!/usr/bin/env bash
# Interop check: rabbit-rpc beside RabbitMQ tutorial 6 as it is published
# today, in Python (pika): rpc_server.py declares rpc_queue durable with
# x-queue-type quorum, as today's tutorials do in every language.
#
#   J  the tutorial's server first, then `rabbit-rpc serve fib`, which joins
#      its queue as it is: every call of a bench is answered, by both
#   L  `rabbit-rpc call` against the tutorial's server alone: 832040
#   K  `rabbit-rpc ping` against it: exit 14 (not a rabbit-rpc server; its
#      handler ran on the ping's body, 0, and answered fib(0)), and it
#      keeps serving
#   D  `rabbit-rpc serve fib` first (declares the queue durable, quorum, no
#      other argument); the tutorial's client gets " [.] Got 832040" from it;
#      then the tutorial's server starts (its declaration matches ours) and
#      every call of a bench is answered, by both
#
# Needs a RabbitMQ broker on 127.0.0.1:5672 (guest/guest), or AMQP_URL, and
# Python 3 with venv; installs pika from PyPI into target/interop/python-venv.
# Builds our binary with cargo unless RABBIT_RPC_BIN points to one. Each run
# uses its own queues and deletes them afterwards.
#
# Prints `ok: …` / `FAIL: …` per check and ends with
# `interop: N passed, M failed`; exits non-zero if anything failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$REPO/target/interop/python-venv"
QUEUE="interop.tutorial-python.$$.$RANDOM"

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

# --- setup -------------------------------------------------------------------

if [ ! -x "$VENV/bin/python" ]; then
    say "making a Python venv in $VENV ..."
    python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
if ! "$VENV/bin/python" -c 'import pika' 2>/dev/null; then
    say "installing pika from PyPI ..."
    "$VENV/bin/python" -m pip install -q pika >&2 || die "pip install pika failed"
fi
PYTHON="$VENV/bin/python"
# pika reads the vhost from the URL's path, percent-encoded as ours.
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"

build_ours "$REPO"

work="$(mktemp -d "${TMPDIR:-/tmp}/interop-tutorial-python.XXXXXX")"
say "queues: $QUEUE.*"
queues=("$QUEUE.theirs-first" "$QUEUE.ours-first")

# py_server NAME QUEUE: the tutorial's server on QUEUE, as `launch NAME`;
# sets py_pid.
py_server() {
    launch "$1" " [x] Awaiting RPC requests" "today's Python tutorial server on $2" \
        env RPC_QUEUE="$2" "$PYTHON" "$HERE/rpc_server.py" || return
    py_pid=$launched_pid
}

# --- J, L: the tutorial's server first -----------------------------------------

if py_server theirs-first "$QUEUE.theirs-first"; then
    call_fib30 "L: rabbit-rpc call -> today's Python tutorial server" "$work/theirs-first.log" \
        "$QUEUE.theirs-first" || true
    rc=0
    bounded 60 "$work/ping.out" "$work/ping.err" "$BIN" ping --queue "$QUEUE.theirs-first" || rc=$?
    after=0
    bounded 60 "$work/after.out" "$work/after.err" "$BIN" call --queue "$QUEUE.theirs-first" 10 ||
        after=$?
    if ((rc == 14 && after == 0)) && alive "$py_pid" && grep -qF "not by a rabbit-rpc server" "$work/ping.err" &&
        printf '55\n' | cmp -s - "$work/after.out"; then
        ok "K: rabbit-rpc ping -> today's Python tutorial server: exit 14 (not a rabbit-rpc server: its handler answered fib(0)), and it keeps serving"
    else
        fail "K: rabbit-rpc ping -> today's Python tutorial server: exit $rc (want 14), server alive: $(alive "$py_pid" && echo yes || echo no); stderr:"
        show <"$work/ping.err"
        show <"$work/theirs-first.log"
    fi
    if start_ours ours-second "$QUEUE.theirs-first"; then
        if grep -qF "(existing queue, served as it is)" "$work/ours-second.log"; then
            fleet "J: today's Python tutorial server first, rabbit-rpc joins its queue" \
                "$QUEUE.theirs-first" "the Python tutorial server" "$work/theirs-first.log" \
                ' [.] fib(20)' "$py_pid" ours-second
        else
            fail "J: rabbit-rpc did not say it joined the tutorial server's queue as it is:"
            show <"$work/ours-second.log"
            stop "$ours_pid" 5
            stop "$py_pid" 5
        fi
    else
        stop "$py_pid" 5
    fi
fi

# --- D: ours first ---------------------------------------------------------------

if start_ours ours-first "$QUEUE.ours-first"; then
    if grep -qF "(created it: durable quorum)" "$work/ours-first.log"; then
        rc=0
        RPC_QUEUE="$QUEUE.ours-first" bounded 60 "$work/client.out" "$work/client.out" \
            "$PYTHON" "$HERE/rpc_client.py" 30 || rc=$?
        if ((rc == 0)) && grep -qF " [.] Got 832040" "$work/client.out"; then
            ok "D: today's Python tutorial client -> rabbit-rpc serve fib: Got 832040"
        else
            fail "D: today's Python tutorial client -> rabbit-rpc serve fib: exit $rc:"
            show <"$work/client.out"
        fi
        if py_server theirs-second "$QUEUE.ours-first"; then
            fleet "D: rabbit-rpc first, today's Python tutorial server's declaration matches" \
                "$QUEUE.ours-first" "the Python tutorial server" "$work/theirs-second.log" \
                ' [.] fib(20)' "$py_pid" ours-first
        else
            stop "$ours_pid" 5
        fi
    else
        fail "D: rabbit-rpc did not say it created the queue durable and quorum:"
        show <"$work/ours-first.log"
        stop "$ours_pid" 5
    fi
fi

summary
((failed == 0))

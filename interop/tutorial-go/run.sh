#!/usr/bin/env bash
# Interop check: rabbit-rpc against the Go client and server of RabbitMQ
# tutorial 6 as the seed has it (2022: client/main.go and server/main.go next
# to this script; the server declares rpc_queue classic and transient).
#
#   A  our `rabbit-rpc serve fib` answers the Go client: fib(30) = 832040
#   B  the Go client's fib(-1) gets our error reply and terminates (it panics
#      parsing it, as the tutorial's client does on any non-number) instead of
#      hanging; our server keeps serving: fib(10) = 55
#   T  our server exits 0 within 10 s of SIGTERM
#   C  `rabbit-rpc call` against the Go server prints exactly 832040
#   M  a mixed fleet on one queue: the Go server first, then ours, which joins
#      its transient queue as it is; and ours first with --transient (the
#      2022 declaration), then the Go server, whose declaration matches. In
#      both, 40 calls are all answered and both servers answer some
#   P  a request lapin cannot parse (correlation_id not valid UTF-8, sent by
#      poison/main.go) to `rabbit-rpc serve fib --queue-type quorum
#      --delivery-limit 3`: the server logs why, keeps reconnecting with
#      growing backoff, the quorum queue's delivery limit drops the request,
#      and the server answers again without a restart
#
# Needs a RabbitMQ broker on 127.0.0.1:5672 (guest/guest), or AMQP_URL, which
# both our binary and the Go programs read. Installs golang-go and
# golang-github-rabbitmq-amqp091-go-dev with apt-get if they are missing
# (sudo unless root) and builds the Go programs offline in GOPATH mode against
# /usr/share/gocode. Builds our binary with cargo unless RABBIT_RPC_BIN points
# to one. Each run uses its own queues and deletes them afterwards.
#
# Prints `ok: …` / `FAIL: …` per check and ends with
# `interop: N passed, M failed`; exits non-zero if anything failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="$REPO/target/interop/tutorial-go"
QUEUE="interop.tutorial-go.$$.$RANDOM"
POISON_QUEUE="$QUEUE.poison"

QUEUES=("$QUEUE" "$QUEUE.go-server" "$POISON_QUEUE" "$QUEUE.mixed-go-first" "$QUEUE.mixed-ours-first")
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

# --- setup -------------------------------------------------------------------

missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
dpkg-query -W -f='${Status}\n' golang-github-rabbitmq-amqp091-go-dev 2>/dev/null |
    grep -q '^install ok installed$' || missing+=(golang-github-rabbitmq-amqp091-go-dev)
if ((${#missing[@]})); then
    say "installing ${missing[*]} ..."
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
    command -v go >/dev/null 2>&1 || die "'go' is still not on PATH after installing golang-go"
fi

say "building the Go tutorial client and server ..."
mkdir -p "$OUT"
for prog in client server poison; do
    (
        cd "$HERE"
        export GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= GOTOOLCHAIN=local
        export GOCACHE="${GOCACHE:-$REPO/target/interop/go-build-cache}"
        go build -o "$OUT/$prog" "./$prog"
    ) >&2 || die "go build of interop/tutorial-go/$prog failed (GOPATH mode against /usr/share/gocode)"
done
GO_CLIENT="$OUT/client"
GO_SERVER="$OUT/server"
GO_POISON="$OUT/poison"

build_ours "$REPO"

work="$(mktemp -d "${TMPDIR:-/tmp}/interop-tutorial-go.XXXXXX")"
say "queue: $QUEUE"

# go_client N [SECONDS]: runs the Go client for fib(N) on our queue with a
# deadline (default 30 s); sets client_rc and client_out (its log, which goes
# to stderr).
go_client() {
    client_rc=0
    RPC_QUEUE="$QUEUE" bounded "${2:-30}" "$work/client.log" "$work/client.log" "$GO_CLIENT" "$1" ||
        client_rc=$?
    client_out="$(cat "$work/client.log")"
}

# --- A, B, T: the Go client against our server --------------------------------

queues=("${QUEUES[@]}")
"$BIN" serve fib --queue "$QUEUE" >"$work/ours.out" 2>"$work/ours.err" &
ours=$!
pids+=("$ours")

if wait_for_line "$work/ours.err" "serving fib on queue" "$ours" 30; then
    go_client 30
    if ((client_rc == 0)) && grep -qF "Got 832040" <<<"$client_out"; then
        ok "A: Go tutorial client -> rabbit-rpc serve fib: fib(30) = 832040"
    else
        fail "A: Go tutorial client -> rabbit-rpc serve fib: fib(30): expected 'Got 832040', client exited $client_rc with:"
        show <<<"$client_out"
    fi

    go_client -1 15
    if ((client_rc == 124)); then
        fail "B: Go tutorial client fib(-1) against rabbit-rpc hung (killed after 15 s):"
        show <<<"$client_out"
    elif ((client_rc >= 125 && client_rc <= 127)); then
        fail "B: could not run the Go tutorial client (timeout exited $client_rc):"
        show <<<"$client_out"
    else
        why="$(grep -m1 -F 'Failed to' <<<"$client_out" | sed -e 's/^[0-9\/]* [0-9:]* //' || true)"
        ok "B: Go tutorial client fib(-1) -> rabbit-rpc terminated (exit $client_rc${why:+: $why})"
    fi

    if alive "$ours"; then
        go_client 10
        if ((client_rc == 0)) && grep -qF "Got 55" <<<"$client_out"; then
            ok "B: rabbit-rpc still serving after fib(-1): fib(10) = 55"
        else
            fail "B: rabbit-rpc after fib(-1): fib(10): expected 'Got 55', client exited $client_rc with:"
            show <<<"$client_out"
        fi
    else
        fail "B: rabbit-rpc serve fib died after the fib(-1) request; its stderr:"
        show <"$work/ours.err"
    fi

    if alive "$ours"; then
        kill -TERM "$ours"
        deadline=$((SECONDS + 10))
        while alive "$ours" && ((SECONDS < deadline)); do sleep 0.1; done
        if alive "$ours"; then
            fail "T: rabbit-rpc serve fib still running 10 s after SIGTERM; its stderr:"
            show <"$work/ours.err"
            stop "$ours" 1
        else
            rc=0
            wait "$ours" || rc=$?
            forget "$ours"
            if ((rc == 0)); then
                ok "T: rabbit-rpc serve fib exited 0 on SIGTERM"
            else
                fail "T: rabbit-rpc serve fib exited $rc on SIGTERM (expected 0); its stderr:"
                show <"$work/ours.err"
            fi
        fi
    else
        fail "T: rabbit-rpc serve fib was no longer running when SIGTERM was due"
    fi
else
    if alive "$ours"; then
        fail "A: rabbit-rpc serve fib did not log 'serving fib on queue' within 30 s; its stderr:"
        stop "$ours" 3
    else
        rc=0
        wait "$ours" || rc=$?
        forget "$ours"
        fail "A: rabbit-rpc serve fib exited ($rc) without logging 'serving fib on queue'; its stderr:"
    fi
    show <"$work/ours.err"
    fail "B: Go tutorial client fib(-1): skipped, rabbit-rpc serve fib did not start"
    fail "B: Go tutorial client fib(10) after fib(-1): skipped, rabbit-rpc serve fib did not start"
    fail "T: SIGTERM: skipped, rabbit-rpc serve fib did not start"
fi

# --- C: our client against the Go server ---------------------------------------

# go_server NAME QUEUE: the Go tutorial server on QUEUE, as `launch NAME`;
# sets go_pid.
go_server() {
    launch "$1" " [*] Awaiting RPC requests" "the Go tutorial server on $2" \
        env RPC_QUEUE="$2" "$GO_SERVER" || return
    go_pid=$launched_pid
}

# On a queue of its own: the 2022 server declares it transient, which the
# queue ours declared (durable, quorum) is not.
if go_server go-server "$QUEUE.go-server"; then
    call_fib30 "C: rabbit-rpc call -> Go tutorial server" "$work/go-server.log" "$QUEUE.go-server" ||
        true
    stop "$go_pid" 5
fi

# --- M: a mixed fleet on one queue, in both orders -----------------------------

if go_server go-first "$QUEUE.mixed-go-first"; then
    if start_ours ours-second "$QUEUE.mixed-go-first"; then
        if grep -qF "(existing queue, served as it is)" "$work/ours-second.log"; then
            fleet "M: Go server first, rabbit-rpc joins its transient queue" \
                "$QUEUE.mixed-go-first" "the Go tutorial server" "$work/go-first.log" 'fib*(20)' \
                "$go_pid" ours-second
        else
            fail "M: rabbit-rpc did not say it joined the Go server's queue as it is:"
            show <"$work/ours-second.log"
            stop "$ours_pid" 5
            stop "$go_pid" 5
        fi
    else
        stop "$go_pid" 5
    fi
fi

if start_ours ours-first "$QUEUE.mixed-ours-first" --transient; then
    if go_server go-second "$QUEUE.mixed-ours-first"; then
        fleet "M: rabbit-rpc --transient first, the Go server's declaration matches" \
            "$QUEUE.mixed-ours-first" "the Go tutorial server" "$work/go-second.log" 'fib*(20)' \
            "$go_pid" ours-first
    else
        stop "$ours_pid" 5
    fi
fi

# --- P: a request lapin cannot parse, on a quorum queue ------------------------

"$BIN" serve fib --queue "$POISON_QUEUE" --queue-type quorum --delivery-limit 3 \
    >"$work/poison-serve.out" 2>"$work/poison-serve.err" &
poisoned=$!
pids+=("$poisoned")
if wait_for_line "$work/poison-serve.err" "serving fib on queue" "$poisoned" 30; then
    rc=0
    RPC_QUEUE="$POISON_QUEUE" bounded 30 "$work/poison.log" "$work/poison.log" "$GO_POISON" || rc=$?
    if ((rc != 0)); then
        fail "P: the Go poison publisher exited $rc:"
        show <"$work/poison.log"
    else
        # Calls until one is answered: while the server reconnects, a call
        # may rightly fail with "no server".
        answered=0
        deadline=$((SECONDS + 90))
        while ((SECONDS < deadline)) && alive "$poisoned"; do
            rc=0
            bounded 20 "$work/poison-call.out" "$work/poison-call.err" \
                "$BIN" call --queue "$POISON_QUEUE" --timeout 10s 12 || rc=$?
            if ((rc == 0)) && printf '144\n' | cmp -s - "$work/poison-call.out"; then
                answered=1
                break
            fi
            sleep 0.5
        done
        losses="$(grep -c "cannot parse" "$work/poison-serve.err" || true)"
        if ((answered)) && alive "$poisoned" && ((losses >= 1)); then
            ok "P: a request lapin cannot parse cost $losses reconnections, then the quorum queue's delivery limit dropped it and rabbit-rpc answered fib(12) = 144"
        else
            fail "P: after a request lapin cannot parse: answered=$answered, server alive=$(alive "$poisoned" && echo yes || echo no), parse failures logged=$losses; server log:"
            show <"$work/poison-serve.err"
        fi
    fi
    stop "$poisoned" 10
else
    fail "P: rabbit-rpc serve fib --queue-type quorum did not log 'serving fib on queue' within 30 s; its stderr:"
    show <"$work/poison-serve.err"
    stop "$poisoned" 3
fi

summary
((failed == 0))

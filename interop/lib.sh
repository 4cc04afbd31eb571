# Shared by the interop checks (interop/*/run.sh): reporting, child
# processes, bounded runs, waiting for a log line, building our binary, and
# cleaning up on exit. Source it after `set -euo pipefail`; it sets the EXIT
# trap. A script adds the queues it uses to `queues` (deleted on exit) and
# may set `work` to a temporary directory (kept when a check failed).

passed=0
failed=0
pids=()
queues=()
work=""

say() { printf '%s\n' "$*" >&2; }
ok() {
    passed=$((passed + 1))
    printf 'ok: %s\n' "$*"
}
fail() {
    failed=$((failed + 1))
    printf 'FAIL: %s\n' "$*"
}
# Indented excerpt of a file or text, for FAIL details.
show() { tail -n 15 | sed -e 's/^/    | /'; }
summary() { printf 'interop: %d passed, %d failed\n' "$passed" "$failed"; }
# A setup step failed: nothing can be checked.
die() {
    fail "setup: $*"
    summary
    exit 1
}

alive() { kill -0 "$1" 2>/dev/null; }

# stop PID [GRACE_SECONDS]: SIGTERM, then SIGKILL after the grace period.
stop() {
    local pid=$1 deadline=$((SECONDS + ${2:-5}))
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

# forget PID: it has been reaped; never signal that number again.
forget() {
    local p kept=()
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
    pids=("${kept[@]}")
}

# rabbitmqctl ARGS...: $RABBITMQCTL (the broker under test's, e.g.
# scripts/rabbitmqctl4), else the one on the PATH; as root, or with sudo -n
# otherwise, within 60 s.
RABBITMQCTL="${RABBITMQCTL:-rabbitmqctl}"
ctl() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo -n); fi
    timeout 60 "${sudo[@]}" "$RABBITMQCTL" "$@"
}

cleanup() {
    local rc=$?
    local pid
    for pid in "${pids[@]}"; do stop "$pid" 3; done
    if ((${#queues[@]})) && command -v "$RABBITMQCTL" >/dev/null 2>&1; then
        local msg q
        for q in "${queues[@]}"; do
            if ! msg="$(ctl -q delete_queue "$q" 2>&1)" && ! grep -qi 'not found' <<<"$msg"; then
                say "note: could not delete queue '$q' (delete it by hand if it lingers): $msg"
            fi
        done
    fi
    if [ -n "$work" ]; then
        if ((failed)); then
            say "logs kept in $work"
        else
            rm -rf "$work"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for_line FILE TEXT PID SECONDS: polls until FILE contains TEXT; fails
# early if PID dies, and at the deadline.
wait_for_line() {
    local file=$1 text=$2 pid=$3 deadline=$((SECONDS + $4))
    while ((SECONDS < deadline)); do
        if grep -qF -- "$text" "$file" 2>/dev/null; then return 0; fi
        alive "$pid" || { grep -qF -- "$text" "$file" 2>/dev/null; return; }
        sleep 0.1
    done
    return 1
}

# bounded SECONDS OUT ERR CMD...: runs CMD under `timeout`, stdout to OUT and
# stderr to ERR, and returns its exit status (124: timed out). Runs it in the
# background and waits, so that a signal to this script takes effect at once
# (and the cleanup trap stops CMD).
bounded() {
    local secs=$1 out=$2 err=$3 pid rc=0
    shift 3
    if [ "$out" = "$err" ]; then
        timeout "$secs" "$@" >"$out" 2>&1 &
    else
        timeout "$secs" "$@" >"$out" 2>"$err" &
    fi
    pid=$!
    pids+=("$pid")
    wait "$pid" || rc=$?
    forget "$pid"
    return "$rc"
}

# build_ours REPO: sets BIN to our binary, $RABBIT_RPC_BIN or a fresh
# `cargo build --release`.
build_ours() {
    if [ -n "${RABBIT_RPC_BIN:-}" ]; then
        BIN="$RABBIT_RPC_BIN"
        [ -x "$BIN" ] || die "RABBIT_RPC_BIN=$BIN is not an executable file"
    else
        say "building rabbit-rpc (cargo build --release) ..."
        (cd "$1" && cargo build --release --locked -q -p rabbit-rpc-cli) >&2 ||
            die "cargo build --release --locked -p rabbit-rpc-cli failed"
        BIN="$1/target/release/rabbit-rpc"
    fi
}

# launch NAME READY WHAT CMD...: starts CMD in the background, its output to
# $work/NAME.log, and waits up to 30 s for a line containing READY; sets
# launched_pid. Returns non-zero, after a FAIL line naming WHAT, if it does
# not get ready.
launch() {
    local name=$1 ready=$2 what=$3
    shift 3
    "$@" >"$work/$name.log" 2>&1 &
    launched_pid=$!
    pids+=("$launched_pid")
    if wait_for_line "$work/$name.log" "$ready" "$launched_pid" 30; then
        return 0
    fi
    fail "$what did not log '$ready' within 30 s; its output:"
    show <"$work/$name.log"
    stop "$launched_pid" 3
    return 1
}

# start_ours NAME QUEUE [OPTIONS...]: `rabbit-rpc serve fib` on QUEUE, as
# `launch NAME`; sets ours_pid.
start_ours() {
    local name=$1 queue=$2
    shift 2
    launch "$name" "serving fib on queue" "rabbit-rpc serve fib --queue $queue $*" \
        "$BIN" serve fib --queue "$queue" "$@" || return
    ours_pid=$launched_pid
}

# call_fib30 CHECK PEER_LOG QUEUE [CALL OPTIONS...]: `rabbit-rpc call
# --queue QUEUE OPTIONS... 30` against a peer's server must print exactly
# 832040 and exit 0; on failure, shows its stderr and PEER_LOG (if any).
call_fib30() {
    local check=$1 peer_log=$2 queue=$3 rc=0
    shift 3
    bounded 60 "$work/call.out" "$work/call.err" "$BIN" call --queue "$queue" "$@" 30 || rc=$?
    if ((rc == 0)) && printf '832040\n' | cmp -s - "$work/call.out"; then
        ok "$check: fib(30) = 832040"
        return 0
    fi
    fail "$check: expected exactly '832040' and exit 0, got exit $rc, stdout '$(cat "$work/call.out")', stderr:"
    show <"$work/call.err"
    if [ -n "$peer_log" ]; then
        echo "    the peer's log:"
        show <"$peer_log"
    fi
    return 1
}

# answered_by_ours PID LOG: stops our server PID and prints how many
# requests it answered (from its "stopped: N answered" line in LOG), or
# nothing.
answered_by_ours() {
    stop "$1" 10
    sed -n 's/.*stopped: \([0-9]*\) answered.*/\1/p' "$2" | tail -n 1
}

# consumers QUEUE: how many consumers the broker lists on QUEUE
# (list_consumers: RabbitMQ 3.10's list_queues counts none on quorum queues).
consumers() {
    ctl -q list_consumers --no-table-headers queue_name 2>/dev/null |
        awk -v q="$1" '$1 == q { n++ } END { print n + 0 }'
}

# fleet CHECK QUEUE PEER PEER_LOG PEER_LINE PEER_PID OURS_NAME: a tutorial
# server (PEER, logging a line containing PEER_LINE to PEER_LOG for each
# fib(20) it computes) and ours (started by start_ours as OURS_NAME, pid
# $ours_pid) both consume QUEUE. The broker must count two
# consumers, every call of a bench of fib(20) must be answered, and each
# server must answer some. Stops both.
fleet() {
    local check=$1 queue=$2 peer=$3 peer_log=$4 line=$5 peer_pid=$6 ours_name=$7
    local rc=0 count theirs ourn
    count="$(consumers "$queue")"
    bounded 120 "$work/$ours_name-bench.out" "$work/$ours_name-bench.err" \
        "$BIN" bench --queue "$queue" --calls 40 --inflight 2 --body 20 || rc=$?
    theirs="$(grep -cF -- "$line" "$peer_log" || true)"
    ourn="$(answered_by_ours "$ours_pid" "$work/$ours_name.log")"
    if ((rc == 0)) && [ "$count" = 2 ] && ((theirs > 0)) && ((${ourn:-0} > 0)); then
        ok "$check: 2 consumers on one queue, every call answered: $theirs by $peer, $ourn by rabbit-rpc"
    else
        fail "$check: consumers=$count, bench exit $rc, answered by $peer=$theirs, by rabbit-rpc=${ourn:-?}; bench output:"
        show <"$work/$ours_name-bench.out"
        show <"$work/$ours_name-bench.err"
        echo "    rabbit-rpc's log:"
        show <"$work/$ours_name.log"
    fi
    stop "$peer_pid" 5
}

#!/usr/bin/env bash
# Runs every test against real brokers, one after the other:
#
#   scripts/test.sh          RabbitMQ 3.10, then RabbitMQ 4.3
#   scripts/test.sh 3.10     the local broker on 127.0.0.1:5672 only
#                            (Debian's rabbitmq-server, started or installed
#                            first if needed)
#   scripts/test.sh 4.3      RabbitMQ 4.3 only (scripts/rabbitmq4.sh, beside
#                            the local broker on 127.0.0.1:5680; its tree is
#                            made if missing, 1-2 minutes)
#
# Each pass is `cargo test --workspace` with the broker chosen by AMQP_URL
# and driven with the rabbitmqctl named by RABBITMQCTL; its cluster tests
# start a 3-node cluster of the same version (scripts/cluster.sh, on ports
# 5701-5703). Every pass says which broker it ran on and its test counts.
# What a pass started (the cluster, the 4.3 nodes, the TLS bed of
# scripts/tls.sh) is stopped again at the end unless it was running before.
# To run the suite against any other broker: AMQP_URL=... RABBITMQCTL=...
# cargo test --workspace (see README.md and docs/TESTING.md).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-all}" in
all) passes=(3.10 4.3) ;;
3.10 | 4.3) passes=("$1") ;;
*)
    echo "usage: scripts/test.sh [3.10|4.3]" >&2
    exit 2
    ;;
esac

say() { printf '%s\n' "$*" >&2; }

# Stopped at the end, in reverse order: what this run started.
cleanups=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local i
    for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do
        eval "${cleanups[i]}" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

# cluster_up KIND: whether the cluster of KIND (3 or 4) runs all three
# nodes.
cluster_up() {
    [ "$(CLUSTER_RABBITMQ=$1 scripts/cluster.sh status 2>/dev/null | grep -c "running, AMQP")" -eq 3 ]
}

# A node of the 4.3 tree, by port: whether it runs now.
rabbitmq4_up() { RABBITMQ4_PORT=$1 scripts/rabbitmq4.sh status >/dev/null 2>&1; }

# The denying node of crates/rabbit-rpc-cli/tests/denied.rs.
if ! rabbitmq4_up 5681; then
    cleanups+=("RABBITMQ4_PORT=5681 scripts/rabbitmq4.sh down")
fi
# The TLS bed of the tls tests (3.10 nodes in both passes).
[ "$(scripts/tls.sh status 2>/dev/null | grep -c "running, AMQPS")" -eq 2 ] || cleanups+=("scripts/tls.sh down")

failed=0
summary=()
for pass in "${passes[@]}"; do
    if [ "$pass" = 3.10 ]; then
        scripts/ensure-rabbitmq.sh
        export AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f" RABBITMQCTL=rabbitmqctl CLUSTER_RABBITMQ=3
        other=4
    else
        rabbitmq4_up 5680 || cleanups+=("scripts/rabbitmq4.sh down")
        scripts/rabbitmq4.sh up
        while IFS= read -r setting; do export "${setting?}"; done < <(scripts/rabbitmq4.sh env)
        export CLUSTER_RABBITMQ=4
        other=3
    fi
    # The two versions' clusters share their ports.
    if cluster_up "$other"; then
        say "stopping the RabbitMQ $other cluster: this pass's cluster needs its ports"
        CLUSTER_RABBITMQ=$other scripts/cluster.sh down
    fi
    cluster_up "$CLUSTER_RABBITMQ" || cleanups+=("CLUSTER_RABBITMQ=$CLUSTER_RABBITMQ scripts/cluster.sh down")
    version="$("$RABBITMQCTL" -q eval 'rabbit_misc:version().' | tr -d '"')"
    say "== tests on RabbitMQ $version at ${AMQP_URL#*@} (RABBITMQCTL=$RABBITMQCTL)"
    log="$(mktemp "${TMPDIR:-/tmp}/rabbit-rpc-test.XXXXXX")"
    started=$SECONDS
    rc=0
    cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || rc=$?
    counts="$(awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d ignored", p, f, i }' "$log")"
    rm -f "$log"
    line="RabbitMQ $version: $counts in $((SECONDS - started)) s$( ((rc == 0)) || printf ' (cargo test exited %s)' "$rc")"
    say "== $line"
    summary+=("$line")
    ((rc == 0)) || failed=1
done

say "== summary"
for line in "${summary[@]}"; do say "   $line"; done
exit "$failed"

#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on this machine, beside the default broker
# (which it never touches): nodes rc1@localhost, rc2@localhost and
# rc3@localhost, AMQP on 127.0.0.1:5701-5703, Erlang distribution on
# 25701-25703, data, logs and config under /var/lib/rabbitmq/cluster/rcN,
# owned by the rabbitmq user. No plugins (so no management port to clash
# with the default broker's).
#
#   scripts/cluster.sh up        start the nodes that are not running, join
#                                rc2 and rc3 to rc1; returns once every node
#                                runs, in one cluster (idempotent)
#   scripts/cluster.sh down      stop the nodes and delete their data
#   scripts/cluster.sh status    each node: running or not, and its port
#   scripts/cluster.sh stop N    rabbitmqctl -n rcN@localhost stop_app
#   scripts/cluster.sh start N   rabbitmqctl -n rcN@localhost start_app, and
#                                wait until it serves again
#   scripts/cluster.sh urls      the three AMQP URLs, comma-separated
#
# Needs Debian's rabbitmq-server (scripts/ensure-rabbitmq.sh installs it),
# and root or sudo. Three nodes take about 30 s to come up on 2 cores.
set -euo pipefail

NODES=(1 2 3)
BASE=/var/lib/rabbitmq/cluster
JOIN_LOG="${TMPDIR:-/tmp}/rabbit-rpc-cluster-join.log"
AMQP_PORT=5700
DIST_PORT=25700

say() { printf '%s\n' "$*" >&2; }
die() {
    say "cluster.sh: $*"
    exit 1
}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
command -v rabbitmq-server >/dev/null 2>&1 ||
    die "rabbitmq-server is not installed; run scripts/ensure-rabbitmq.sh first"

node() { printf 'rc%s@localhost' "$1"; }

# ctl N ARGS...: rabbitmqctl against node N, within 60 s.
ctl() {
    local n=$1
    shift
    timeout 60 "${SUDO[@]}" rabbitmqctl -q -n "$(node "$n")" "$@"
}

running() { ctl "$1" ping >/dev/null 2>&1; }
app_running() { ctl "$1" eval 'rabbit:is_running().' 2>/dev/null | grep -qx true; }

# await N SECONDS: until node N's application serves (await_startup fails
# while the node is still registering, so retry it).
await() {
    local n=$1 deadline=$((SECONDS + $2))
    until ctl "$n" await_startup >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$(node "$n") did not start within $2 s; its log: $BASE/rc$n/log"
        sleep 1
    done
}

start_node() {
    local n=$1 dir="$BASE/rc$1"
    "${SUDO[@]}" mkdir -p "$dir/mnesia" "$dir/log"
    printf 'listeners.tcp.local = 127.0.0.1:%s\nloopback_users.guest = true\n' \
        "$((AMQP_PORT + n))" | "${SUDO[@]}" tee "$dir/rabbitmq.conf" >/dev/null
    printf '[].\n' | "${SUDO[@]}" tee "$dir/enabled_plugins" >/dev/null
    "${SUDO[@]}" chown -R rabbitmq:rabbitmq "$dir"
    say "starting $(node "$n") on 127.0.0.1:$((AMQP_PORT + n)) ..."
    "${SUDO[@]}" env \
        RABBITMQ_NODENAME="$(node "$n")" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$((AMQP_PORT + n))" \
        RABBITMQ_DIST_PORT="$((DIST_PORT + n))" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
        rabbitmq-server -detached >/dev/null
}

# clustered N: whether node N's cluster has all three nodes running.
clustered() {
    local status
    status="$(ctl "$1" cluster_status --formatter json 2>/dev/null)" || return 1
    python3 -c '
import json, sys
running = set(json.loads(sys.argv[1]).get("running_nodes", []))
sys.exit(0 if {"rc1@localhost", "rc2@localhost", "rc3@localhost"} <= running else 1)
' "$status"
}

up() {
    for n in "${NODES[@]}"; do
        running "$n" || start_node "$n"
    done
    for n in "${NODES[@]}"; do await "$n" 120; done
    if clustered 1; then
        say "cluster up: rc1, rc2, rc3 running on 127.0.0.1:5701-5703"
        return
    fi
    for n in 2 3; do
        if ! ctl 1 cluster_status --formatter json 2>/dev/null | grep -q "rc$n@localhost"; then
            say "joining $(node "$n") to rc1@localhost ..."
            {
                ctl "$n" stop_app &&
                    ctl "$n" reset &&
                    ctl "$n" join_cluster rc1@localhost &&
                    ctl "$n" start_app
            } >>"$JOIN_LOG" 2>&1 || die "could not join $(node "$n") to rc1; see $JOIN_LOG"
        elif ! app_running "$n"; then
            ctl "$n" start_app
        fi
        await "$n" 120
    done
    clustered 1 || die "the nodes did not form one cluster; see $BASE/rcN/log"
    say "cluster up: rc1, rc2, rc3 running on 127.0.0.1:5701-5703"
}

down() {
    for n in "${NODES[@]}"; do
        if running "$n"; then
            say "stopping $(node "$n") ..."
            ctl "$n" stop >/dev/null || true
        fi
    done
    "${SUDO[@]}" rm -rf "$BASE"
    say "cluster down"
}

status() {
    for n in "${NODES[@]}"; do
        if ! running "$n"; then
            printf '%s  not running\n' "$(node "$n")"
        elif app_running "$n"; then
            printf '%s  running, AMQP on 127.0.0.1:%s\n' "$(node "$n")" "$((AMQP_PORT + n))"
        else
            printf '%s  node up, application stopped\n' "$(node "$n")"
        fi
    done
}

which_node() {
    [[ "${1:-}" =~ ^[123]$ ]] || die "name a node: 1, 2 or 3"
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
stop)
    which_node "${2:-}"
    ctl "$2" stop_app
    ;;
start)
    which_node "${2:-}"
    ctl "$2" start_app
    await "$2" 120
    ;;
urls)
    printf 'amqp://guest:guest@127.0.0.1:5701/%%2f,amqp://guest:guest@127.0.0.1:5702/%%2f,amqp://guest:guest@127.0.0.1:5703/%%2f\n'
    ;;
*)
    say "usage: scripts/cluster.sh up|down|status|stop N|start N|urls"
    exit 2
    ;;
esac

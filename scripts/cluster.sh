#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on this machine, beside the default broker
# (which it never touches): nodes rc1@localhost, rc2@localhost and
# rc3@localhost, AMQP on 127.0.0.1:5701-5703, Erlang distribution on
# 25701-25703. No plugins (so no management port to clash with the default
# broker's). Two kinds, chosen by env CLUSTER_RABBITMQ:
#
#   (unset, or 3)  RabbitMQ 3.10, the host's (Debian 12's rabbitmq-server;
#       scripts/ensure-rabbitmq.sh installs it): data, logs and config
#       under /var/lib/rabbitmq/cluster/rcN, owned by the rabbitmq user; the
#       host's epmd and cookie; rabbitmqctl is the host's.
#   4  RabbitMQ 4.3 (Khepri metadata store, no classic mirroring), from
#       the tree of scripts/rabbitmq4.sh (made by it if missing): the nodes
#       are its nodes RABBITMQ4_NODENAME=rcN RABBITMQ4_PORT=570N, with
#       their config, data and logs in the tree's
#       /var/lib/rabbitmq/nodes/rcN@localhost; the tree's epmd
#       (127.0.0.1:4380) and cookie; rabbitmqctl is scripts/rabbitmqctl4
#       (`scripts/rabbitmqctl4 -n rc1@localhost list_queues` reaches node
#       1). Beside rabbit4@localhost, which it never touches.
#
# The two cannot run at once (same ports): up refuses, in one line, when
# anything but this kind's own nodes holds 5701-5703 or 25701-25703.
#
#   scripts/cluster.sh up        start the nodes that are not running (4.3:
#                                start_app those whose application is
#                                stopped), join rc2 and rc3 to rc1 (stop_app,
#                                reset, join_cluster rc1@localhost,
#                                start_app); returns once every node runs,
#                                in one cluster (idempotent)
#   scripts/cluster.sh down      stop the nodes and delete their data (4.3:
#                                their directories in the tree, not the
#                                tree, nor any other node of it)
#   scripts/cluster.sh status    each node: running or not, and its port
#   scripts/cluster.sh stop N    rabbitmqctl -n rcN@localhost stop_app
#   scripts/cluster.sh start N   rabbitmqctl -n rcN@localhost start_app, and
#                                wait until it serves again
#   scripts/cluster.sh urls      the three AMQP URLs, comma-separated
#
# E.g. the cluster tests against 4.3:
#   CLUSTER_RABBITMQ=4 RABBITMQCTL=$PWD/scripts/rabbitmqctl4 \
#       cargo test -p rabbit-rpc-cli --test cluster
#
# Needs root or sudo. Three 3.10 nodes take about 30 s to come up on 2
# cores; three 4.3 nodes about 20 s (the tree, if missing: a minute more).
set -euo pipefail

NODES=(1 2 3)
BASE=/var/lib/rabbitmq/cluster
JOIN_LOG="${TMPDIR:-/tmp}/rabbit-rpc-cluster-join.log"
AMQP_PORT=5700
DIST_PORT=25700
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
R4="$HERE/rabbitmq4.sh"

say() { printf '%s\n' "$*" >&2; }
die() {
    say "cluster.sh: $*"
    exit 1
}

case "${CLUSTER_RABBITMQ:-}" in
"" | 3 | 3.10) KIND=3.10 ;;
4 | 4.3) KIND=4.3 ;;
*) die "CLUSTER_RABBITMQ must be 4 (RabbitMQ 4.3) or unset (3.10), not '$CLUSTER_RABBITMQ'" ;;
esac

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
if [ "$KIND" = 3.10 ]; then
    command -v rabbitmq-server >/dev/null 2>&1 ||
        die "rabbitmq-server is not installed; run scripts/ensure-rabbitmq.sh first"
fi

node() { printf 'rc%s@localhost' "$1"; }

# r4 N ARGS...: scripts/rabbitmq4.sh ARGS for node N (4.3).
r4() {
    local n=$1
    shift
    RABBITMQ4_NODENAME="$(node "$n")" RABBITMQ4_PORT="$((AMQP_PORT + n))" \
        RABBITMQ4_DIST_PORT="$((DIST_PORT + n))" "$R4" "$@"
}

# ctl N ARGS...: rabbitmqctl against node N, within 60 s.
ctl() {
    local n=$1
    shift
    if [ "$KIND" = 4.3 ]; then
        r4 "$n" ctl -q -n "$(node "$n")" "$@"
    else
        timeout 60 "${SUDO[@]}" rabbitmqctl -q -n "$(node "$n")" "$@"
    fi
}

running() { ctl "$1" ping >/dev/null 2>&1; }
app_running() { ctl "$1" eval 'rabbit:is_running().' 2>/dev/null | grep -qx true; }

# holder PORT: who listens on 127.0.0.1:PORT, as "KIND NODE PID" (KIND
# 3.10 for a beam.smp of the host, 4.3 for one in a chroot: the tree of
# scripts/rabbitmq4.sh) or "other NAME PID"; nothing if nobody does.
holder() {
    local line pid name root node
    line="$("${SUDO[@]}" ss -Hltnp "sport = :$1" | awk 'NR == 1')"
    [ -n "$line" ] || return 0
    pid="$(grep -o 'pid=[0-9]*' <<<"$line" | head -n 1)" || true
    pid="${pid#pid=}"
    name="$(grep -o '(("[^"]*"' <<<"$line" | head -n 1)" || true
    name="${name#((\"}"
    name="${name%\"}"
    if [ -z "$pid" ] || [ "$name" != beam.smp ]; then
        printf 'other %s %s\n' "${name:-?}" "${pid:-?}"
        return
    fi
    root="$("${SUDO[@]}" readlink "/proc/$pid/root" 2>/dev/null)" || true
    node="$("${SUDO[@]}" cat "/proc/$pid/environ" 2>/dev/null | tr '\0' '\n' |
        sed -n 's/^RABBITMQ_NODENAME=//p')" || true
    if [ "$root" = / ]; then
        printf '3.10 %s %s\n' "${node:-?}" "$pid"
    else
        printf '4.3 %s %s\n' "${node:-?}" "$pid"
    fi
}

# describe KIND NODE PID: what holder found, in words.
describe() {
    case "$1" in
    3.10 | 4.3)
        case "$2" in
        rc[123]@localhost) printf "%s of the RabbitMQ %s cluster (pid %s)" "$2" "$1" "$3" ;;
        *) printf "RabbitMQ %s node %s (pid %s)" "$1" "$2" "$3" ;;
        esac
        ;;
    *) printf '%s (pid %s)' "$2" "$3" ;;
    esac
}

# check_ports: fail (one line) if anything but this kind's node N holds
# its AMQP or distribution port.
check_ports() {
    local n port h
    for n in "${NODES[@]}"; do
        for port in "$((AMQP_PORT + n))" "$((DIST_PORT + n))"; do
            h="$(holder "$port")"
            [ -n "$h" ] || continue
            # shellcheck disable=SC2086 # KIND NODE PID
            set -- $h
            [ "$1" != "$KIND" ] || [ "$2" != "$(node "$n")" ] || continue
            if [ "$1" = 3.10 ] && [[ "$2" == rc[123]@localhost ]]; then
                die "cannot start the $KIND cluster: 127.0.0.1:$port is held by $(describe "$@"); stop that cluster first: scripts/cluster.sh down"
            elif [ "$1" = 4.3 ] && [[ "$2" == rc[123]@localhost ]]; then
                die "cannot start the $KIND cluster: 127.0.0.1:$port is held by $(describe "$@"); stop that cluster first: CLUSTER_RABBITMQ=4 scripts/cluster.sh down"
            fi
            die "cannot start the $KIND cluster: 127.0.0.1:$port is held by $(describe "$@")"
        done
    done
}

# other_kind_note: on stderr, a line if the other kind's cluster holds the
# ports (for status).
other_kind_note() {
    local h
    h="$(holder "$((AMQP_PORT + 1))")"
    [ -n "$h" ] || h="$(holder "$((DIST_PORT + 1))")"
    [ -n "$h" ] || return 0
    # shellcheck disable=SC2086 # KIND NODE PID
    set -- $h
    [ "$1" != "$KIND" ] || return 0
    if [ "$1" = 4.3 ]; then
        say "note: the ports are held by $(describe "$@") (CLUSTER_RABBITMQ=4 scripts/cluster.sh status)"
    elif [ "$1" = 3.10 ]; then
        say "note: the ports are held by $(describe "$@") (scripts/cluster.sh status, without CLUSTER_RABBITMQ)"
    else
        say "note: 127.0.0.1:$((AMQP_PORT + 1)) is held by $(describe "$@")"
    fi
}

# log_of N: where node N's logs are (N may be a letter: rcN).
log_of() {
    if [ "$KIND" = 4.3 ]; then
        printf '%s/rc%s@localhost/log' "$(dirname "$(r4 1 dir)")" "$1"
    else
        printf '%s/rc%s/log' "$BASE" "$1"
    fi
}

# await N SECONDS: until node N's application serves (await_startup fails
# while the node is still registering, so retry it).
await() {
    local n=$1 deadline=$((SECONDS + $2))
    until ctl "$n" await_startup >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$(node "$n") did not start within $2 s; its log: $(log_of "$n")"
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
    local t0=$SECONDS
    check_ports
    if [ "$KIND" = 4.3 ]; then
        # All launched before any is waited for: members of a cluster that
        # restart with their data wait for each other.
        for n in "${NODES[@]}"; do r4 "$n" up --no-wait; done
    else
        for n in "${NODES[@]}"; do
            running "$n" || start_node "$n"
        done
    fi
    for n in "${NODES[@]}"; do await "$n" 120; done
    if clustered 1; then
        say "cluster up ($KIND): rc1, rc2, rc3 running on 127.0.0.1:5701-5703 ($((SECONDS - t0)) s)"
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
    clustered 1 || die "the nodes did not form one cluster; see $(log_of N)"
    say "cluster up ($KIND): rc1, rc2, rc3 running on 127.0.0.1:5701-5703 ($((SECONDS - t0)) s)"
}

down() {
    local t0=$SECONDS
    if [ "$KIND" = 4.3 ]; then
        # Each node stopped and its directory deleted; the tree, its epmd
        # (while another node of it runs) and rabbit4@localhost stay.
        for n in "${NODES[@]}"; do r4 "$n" remove; done
    else
        for n in "${NODES[@]}"; do
            if running "$n"; then
                say "stopping $(node "$n") ..."
                ctl "$n" stop >/dev/null || true
            fi
        done
        "${SUDO[@]}" rm -rf "$BASE"
    fi
    say "cluster down ($KIND, $((SECONDS - t0)) s)"
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
    other_kind_note
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
    say "usage: [CLUSTER_RABBITMQ=4] scripts/cluster.sh up|down|status|stop N|start N|urls"
    exit 2
    ;;
esac

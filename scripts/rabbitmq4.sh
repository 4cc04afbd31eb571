#!/usr/bin/env bash
# RabbitMQ 4.3 (Debian forky's rabbitmq-server, Erlang/OTP 29) beside the
# default broker, which it never touches (nor the 3.10 nodes of
# scripts/cluster.sh). Its Erlang needs a newer libc than Debian 12's, so it
# lives in a separate root ("the tree") made with debootstrap:
# /var/lib/rabbit-rpc/rabbitmq4 (env RABBITMQ4_ROOT).
#
# Any number of nodes run from the one tree; which one a command is about
# comes from the environment:
#   RABBITMQ4_PORT       its AMQP port on 127.0.0.1 (default 5680)
#   RABBITMQ4_NODENAME   its name (default rabbit4@localhost for port 5680,
#                        else rabbit4-PORT@localhost; NAME means
#                        NAME@localhost)
#   RABBITMQ4_DIST_PORT  its Erlang distribution port (default PORT+20000)
# so by default: node rabbit4@localhost, AMQP on 127.0.0.1:5680, Erlang
# distribution on 127.0.0.1:25680. Each node has its own directory in the
# tree, /var/lib/rabbitmq/nodes/NODE/ (`dir` prints its path on the host):
# rabbitmq.conf, enabled_plugins, rabbitmq-env.conf, rabbitmq.pid, mnesia/
# (its data: Khepri, queues) and log/ (its logs, startup_log). The nodes of
# the tree share one epmd on 127.0.0.1:4380 (env RABBITMQ4_EPMD_PORT; the
# host's is on 4369) and one Erlang cookie (the tree's rabbitmq user's), so
# they see each other, can form a cluster (scripts/cluster.sh with
# CLUSTER_RABBITMQ=4 does), and `ctl -n NODE ...` reaches any of them.
# rabbitmqctl's own distribution ports: 40 per AMQP port from 36680
# (36680-36719 for 5680, 36720-36759 for 5681, ...; the host CLI's are
# 35672-35682). Config: RabbitMQ 4.3's defaults plus the listener and
# `loopback_users.guest = true` (guest/guest from localhost only); no
# plugins, so no management port.
#
#   scripts/rabbitmq4.sh up       make the tree if missing (installs
#                                 debootstrap on the host if needed, then
#                                 debootstrap + apt-get install
#                                 rabbitmq-server in it: about a minute,
#                                 ~300 MB), start the node if it is not
#                                 running (~4 s), start_app if it runs
#                                 with its application stopped; returns
#                                 once it serves AMQP. Idempotent: ~1 s
#                                 when it already runs. Progress on stderr.
#   scripts/rabbitmq4.sh up --no-wait
#                                 the same, but returns as soon as the node
#                                 is launched (members of a cluster that
#                                 restart with their data wait for each
#                                 other: start them all, then wait)
#   scripts/rabbitmq4.sh down     stop the node: rabbitmqctl shutdown, then
#                                 end (by PID) whatever of it still runs:
#                                 its beam.smp (the one started with
#                                 RABBITMQ_NODENAME=NODE) and that beam's
#                                 children. Only when no node of the tree
#                                 is left running: end whatever else runs
#                                 in the tree (its epmd) and unmount the
#                                 tree's /proc. Keeps the tree and the
#                                 node's data, so the next up is fast.
#   scripts/rabbitmq4.sh remove   down, then delete the node's directory
#                                 (its config, data and logs)
#   scripts/rabbitmq4.sh purge    stop every node of the tree, then delete
#                                 the tree (same as: down --purge)
#   scripts/rabbitmq4.sh status   one line, e.g. "rabbit4@localhost running
#                                 RabbitMQ 4.3.6 on 127.0.0.1:5680"; exit 0
#                                 if it serves AMQP, 3 if not (not
#                                 installed, not running, application
#                                 stopped)
#   scripts/rabbitmq4.sh nodes    the nodes of the tree that run, one a line
#   scripts/rabbitmq4.sh dir      the node's directory, as seen from the host
#   scripts/rabbitmq4.sh url      amqp://guest:guest@127.0.0.1:5680/%2f
#   scripts/rabbitmq4.sh env      AMQP_URL=... and RABBITMQCTL=<absolute
#                                 path of scripts/rabbitmqctl4>, one per
#                                 line (plus those of RABBITMQ4_ROOT, _PORT,
#                                 _NODENAME, _DIST_PORT, _EPMD_PORT that are
#                                 set): `export $(scripts/rabbitmq4.sh env)`
#                                 or `set -a; eval "$(scripts/rabbitmq4.sh env)"; set +a`
#   scripts/rabbitmq4.sh version  the broker's version, e.g. 4.3.6 (the
#                                 running node's, else the installed one's)
#   scripts/rabbitmq4.sh ctl ARGS...
#                                 the tree's rabbitmqctl against the node
#                                 (or any node of the tree: `ctl -n NODE
#                                 ...`), e.g. `ctl list_queues name
#                                 messages`, `ctl stop_app`, `ctl eval
#                                 'node().'`; arguments go through
#                                 unchanged; stdout, stderr and exit status
#                                 pass through; killed after 60 s (status
#                                 124). Safe to run concurrently (40 ports;
#                                 20 at once measured). scripts/rabbitmqctl4
#                                 is this as a command (RABBITMQCTL=...).
# up, down, remove and purge take the tree's lock ($ROOT.lock): one at a
# time per tree (the others wait, up to 600 s).
#
# Other settings (env):
#   RABBITMQ4_CONF_EXTRA=FILE  lines appended to the node's rabbitmq.conf
#       when up starts it, e.g.
#       `deprecated_features.permit.transient_nonexcl_queues = false`
#       (to change a running node's config, run down first)
#   RABBITMQ4_ROOT  another tree (a second debootstrap); give it its own
#       RABBITMQ4_EPMD_PORT too (up refuses an epmd of another tree)
#   RABBITMQ4_SUITE (default forky), RABBITMQ4_MIRROR (default: the Debian
#       mirror the host's apt sources name)
#
# Traps this handles: the mirror's forky Release file is past Valid-Until
# (apt in the root: Check-Valid-Until false; signatures still checked); the
# package would give the root's rabbitmq user a uid of another host
# account (made first, with an id free on both); services must not start
# during the install (policy-rc.d exits 101); Debian's rabbitmq-server and
# rabbitmqctl wrappers re-parse their arguments with sh (this runs the real
# ones directly, as the rabbitmq user); RabbitMQ 4's beam.smp does not name
# its node on its command line (its environment does: RABBITMQ_NODENAME).
# A node of the old layout (one node per tree, data in the tree's
# /var/lib/rabbitmq/mnesia) has its data moved to its directory when up
# next starts it.
#
# Needs root or sudo, and network access to the Debian mirror for the
# first up. Logs of the first up: ${TMPDIR:-/tmp}/rabbitmq4-*.log.
set -euo pipefail

ROOT="${RABBITMQ4_ROOT:-/var/lib/rabbit-rpc/rabbitmq4}"
ROOT="${ROOT%/}"
PORT="${RABBITMQ4_PORT:-5680}"
SUITE="${RABBITMQ4_SUITE:-forky}"
EPMD_PORT="${RABBITMQ4_EPMD_PORT:-4380}"

say() { printf '%s\n' "$*" >&2; }
die() {
    say "rabbitmq4.sh: $*"
    exit 1
}

if ! [[ "$PORT" =~ ^[0-9]+$ ]] || ((PORT < 1024 || PORT > 45000)); then
    die "RABBITMQ4_PORT must be a number in 1024-45000"
fi
DIST_PORT="${RABBITMQ4_DIST_PORT:-$((PORT + 20000))}" # 25680
if ! [[ "$DIST_PORT" =~ ^[0-9]+$ ]] || ((DIST_PORT < 1024 || DIST_PORT > 65535 || DIST_PORT == PORT)); then
    die "RABBITMQ4_DIST_PORT must be a number in 1024-65535, not the AMQP port"
fi
if ! [[ "$EPMD_PORT" =~ ^[0-9]+$ ]] || ((EPMD_PORT < 1024 || EPMD_PORT > 65535 || EPMD_PORT == 4369)); then
    die "RABBITMQ4_EPMD_PORT must be a number in 1024-65535, not the host's 4369"
fi
((EPMD_PORT != PORT && EPMD_PORT != DIST_PORT)) || die "the AMQP and distribution ports must not be the epmd port $EPMD_PORT"
if [ -n "${RABBITMQ4_NODENAME:-}" ]; then
    NODE="$RABBITMQ4_NODENAME"
    [[ "$NODE" == *@* ]] || NODE="$NODE@localhost"
elif ((PORT == 5680)); then
    NODE=rabbit4@localhost
else
    NODE="rabbit4-$PORT@localhost"
fi
[[ "$NODE" =~ ^[A-Za-z0-9_-]+@[A-Za-z0-9.-]+$ ]] || die "RABBITMQ4_NODENAME: not a node name: $NODE"
# rabbitmqctl's own distribution ports, one per concurrent call: 36680-36719
# (the host CLI's are 35672-35682), 36720-36759 for port 5681, and so on.
CTL_PORT_MIN=$((36680 + ((PORT - 5680) * 40 % 20000 + 20000) % 20000))
CTL_PORT_MAX=$((CTL_PORT_MIN + 39))
# The node's directory, inside the tree and from the host.
NODE_DIR_IN="/var/lib/rabbitmq/nodes/$NODE"
NODE_DIR="$ROOT$NODE_DIR_IN"
READY="$ROOT/.rabbit-rpc-ready" # written last when the root is complete
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

url() { printf 'amqp://guest:guest@127.0.0.1:%s/%%2f\n' "$PORT"; }

# The environment every command in the root runs with: nothing from the
# caller's (no stray RABBITMQ_*, TMPDIR, ERL_* of the host's broker). Every
# file of the node is in its directory; its rabbitmq-env.conf says the same
# (for rabbitmq-* run by hand in the root).
NODE_SETTINGS=(
    RABBITMQ_NODENAME="$NODE"
    RABBITMQ_DIST_PORT="$DIST_PORT"
    RABBITMQ_CONF_ENV_FILE="$NODE_DIR_IN/rabbitmq-env.conf"
    RABBITMQ_CONFIG_FILE="$NODE_DIR_IN/rabbitmq.conf"
    RABBITMQ_CONFIG_FILES="$NODE_DIR_IN/conf.d"
    RABBITMQ_ADVANCED_CONFIG_FILE="$NODE_DIR_IN/advanced.config"
    RABBITMQ_ENABLED_PLUGINS_FILE="$NODE_DIR_IN/enabled_plugins"
    RABBITMQ_MNESIA_BASE="$NODE_DIR_IN/mnesia"
    RABBITMQ_LOG_BASE="$NODE_DIR_IN/log"
    RABBITMQ_PID_FILE="$NODE_DIR_IN/rabbitmq.pid"
    RABBITMQ_CTL_DIST_PORT_MIN="$CTL_PORT_MIN"
    RABBITMQ_CTL_DIST_PORT_MAX="$CTL_PORT_MAX"
    ERL_EPMD_PORT="$EPMD_PORT"
    ERL_EPMD_ADDRESS=127.0.0.1
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
    RABBITMQ_CTL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
)
ROOT_ENV=(
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8
    "${NODE_SETTINGS[@]}"
)

# in_root ROOTDIR CMD...: CMD inside ROOTDIR, as root, with ROOT_ENV
# (making the tree). Without fd 9, the lock of up/down: whatever stays
# running would hold it.
in_root() {
    local dir=$1
    shift
    "${SUDO[@]}" chroot "$dir" /usr/bin/env -i "${ROOT_ENV[@]}" "$@" 9<&-
}

# AS_RABBITMQ CMD...: CMD inside the tree as its rabbitmq user (whose home
# holds the tree's cookie), in that home, with ROOT_ENV.
AS_RABBITMQ=(
    "${SUDO[@]}" chroot --userspec=rabbitmq:rabbitmq "$ROOT"
    /usr/bin/env -i --chdir=/var/lib/rabbitmq "${ROOT_ENV[@]}" HOME=/var/lib/rabbitmq
)

# ctl ARGS...: the tree's rabbitmqctl against the node, within 60 s. Not
# through Debian's /usr/sbin/rabbitmqctl: that wrapper passes its arguments
# through `su -c` with only double quotes escaped, so $, ` and \ in an
# `eval` expression would be mangled. Without fd 9, the lock of up/down.
ctl() {
    timeout -k 5 60 "${AS_RABBITMQ[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl "$@" 9<&-
}

installed() { [ -e "$READY" ]; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
proc_mounted() { mountpoint -q "$ROOT/proc"; }
package_version() {
    local v
    # shellcheck disable=SC2016 # dpkg-query's format, not the shell's
    v="$("${SUDO[@]}" chroot "$ROOT" dpkg-query -W -f '${Version}' rabbitmq-server)"
    v="${v#*:}"
    printf '%s\n' "${v%-*}"
}

# The Debian mirror the host's apt sources name (not the security one).
mirror() {
    if [ -n "${RABBITMQ4_MIRROR:-}" ]; then
        printf '%s\n' "$RABBITMQ4_MIRROR"
        return
    fi
    local m
    # shellcheck disable=SC2016 # apt's format, not the shell's
    m="$(apt-get indextargets --format '$(ORIGIN)|$(LABEL)|$(REPO_URI)' 2>/dev/null |
        awk -F'|' '$1 == "Debian" && $2 == "Debian" { print $3; exit }')"
    printf '%s\n' "${m:-http://deb.debian.org/debian/}"
}

# pids_in DIR: the processes whose root directory is DIR.
pids_in() {
    local dir p r
    dir="$("${SUDO[@]}" realpath "$1")"
    for p in /proc/[0-9]*; do
        r="$("${SUDO[@]}" readlink "$p/root" 2>/dev/null)" || continue
        [ "$r" = "$dir" ] && printf '%s\n' "${p#/proc/}"
    done
    return 0
}

# unmount_all DIR: every mount at or below DIR (proc, and whatever an
# interrupted debootstrap left behind), deepest first.
unmount_all() {
    local dir m
    dir="$("${SUDO[@]}" realpath "$1")"
    findmnt -rn -o TARGET | awk -v d="$dir" 'index($0, d "/") == 1' | sort -r |
        while read -r m; do
            "${SUDO[@]}" umount "$m" 2>/dev/null || "${SUDO[@]}" umount -l "$m"
        done
}

# free_id KIND FILE: a uid (KIND passwd) or gid (KIND group) that neither
# the host nor the root at FILE uses, so that files and processes of the
# root's rabbitmq user never show up as another host account's.
free_id() {
    local kind=$1 file=$2 id
    for id in $(seq 480 999); do
        getent "$kind" "$id" >/dev/null && continue
        awk -F: -v id="$id" '$3 == id { found = 1 } END { exit !found }' "$file" && continue
        printf '%s\n' "$id"
        return
    done
    die "no free system ${kind} id in 480-999"
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return
    say "installing debootstrap on the host (apt-get) ..."
    local log="${TMPDIR:-/tmp}/rabbitmq4-host-apt.log"
    {
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap ||
            { "${SUDO[@]}" apt-get update -qq &&
                "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
    } >"$log" 2>&1 || die "apt-get install debootstrap failed; see $log"
}

# make_root: build the root in $ROOT.new (resumable: debootstrap is redone
# only if it did not finish), then move it to $ROOT.
make_root() {
    local new="$ROOT.new" m script t0=$SECONDS
    ensure_debootstrap
    "${SUDO[@]}" mkdir -p "$(dirname "$ROOT")"
    if [ -d "$new" ]; then
        end_pids_in "$new"
        unmount_all "$new"
    fi
    if [ ! -e "$new/.debootstrap-done" ]; then
        "${SUDO[@]}" rm -rf --one-file-system "$new"
        m="$(mirror)"
        # Debian 12's debootstrap has no script for forky: sid's fits.
        script=/usr/share/debootstrap/scripts/sid
        say "debootstrap --variant=minbase $SUITE into $new from $m (about a minute) ..."
        "${SUDO[@]}" debootstrap --variant=minbase "$SUITE" "$new" "$m" "$script" 9<&- \
            >"${TMPDIR:-/tmp}/rabbitmq4-debootstrap.log" 2>&1 ||
            die "debootstrap failed; see ${TMPDIR:-/tmp}/rabbitmq4-debootstrap.log"
        "${SUDO[@]}" touch "$new/.debootstrap-done"
    fi

    # apt: the mirror's Release files may be past Valid-Until (signatures
    # are still checked); no recommends, no docs.
    printf '%s\n' 'Acquire::Check-Valid-Until "false";' 'APT::Install-Recommends "false";' \
        'Acquire::Languages "none";' | "${SUDO[@]}" tee "$new/etc/apt/apt.conf.d/99rabbit-rpc" >/dev/null
    printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' \
        'path-exclude=/usr/share/locale/*' | "${SUDO[@]}" tee "$new/etc/dpkg/dpkg.cfg.d/rabbit-rpc" >/dev/null
    # No service may start inside the root while packages install.
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$new/usr/sbin/policy-rc.d" >/dev/null
    "${SUDO[@]}" chmod 755 "$new/usr/sbin/policy-rc.d"
    grep -qw localhost "$new/etc/hosts" 2>/dev/null ||
        printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' |
        "${SUDO[@]}" tee -a "$new/etc/hosts" >/dev/null
    # The package would pick the next free system uid of the root, which
    # can be a different account's on the host: create the user first.
    if ! grep -q '^rabbitmq:' "$new/etc/group"; then
        "${SUDO[@]}" chroot "$new" groupadd --system --gid "$(free_id group "$new/etc/group")" rabbitmq
    fi
    if ! grep -q '^rabbitmq:' "$new/etc/passwd"; then
        "${SUDO[@]}" chroot "$new" useradd --system --uid "$(free_id passwd "$new/etc/passwd")" \
            --gid rabbitmq --home-dir /var/lib/rabbitmq --no-create-home \
            --shell /usr/sbin/nologin --comment 'RabbitMQ messaging server' rabbitmq
    fi

    say "apt-get install rabbitmq-server in $new ..."
    "${SUDO[@]}" mountpoint -q "$new/proc" || "${SUDO[@]}" mount -t proc proc "$new/proc"
    if ! {
        in_root "$new" apt-get update -qq &&
            in_root "$new" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server &&
            in_root "$new" apt-get clean
    } >"${TMPDIR:-/tmp}/rabbitmq4-apt.log" 2>&1; then
        end_pids_in "$new"
        unmount_all "$new"
        die "apt-get install rabbitmq-server failed in $new; see ${TMPDIR:-/tmp}/rabbitmq4-apt.log"
    fi
    end_pids_in "$new" # whatever the install may have started (epmd)
    unmount_all "$new"
    "${SUDO[@]}" touch "$new/.rabbit-rpc-ready"
    "${SUDO[@]}" mv "$new" "$ROOT"
    say "made $ROOT in $((SECONDS - t0)) s: RabbitMQ $(package_version)"
}

# end_procs WHAT LIST...: SIGTERM, then (after 5 s) SIGKILL, the processes
# whose PIDs the command LIST prints; LIST is asked again after each step,
# so that only processes that still fit are signalled.
end_procs() {
    local what=$1 pids deadline
    shift
    mapfile -t pids < <("$@")
    [ "${#pids[@]}" -gt 0 ] || return 0
    say "ending $what: ${pids[*]}"
    "${SUDO[@]}" kill -TERM "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
        mapfile -t pids < <("$@")
        [ "${#pids[@]}" -gt 0 ] || return 0
        sleep 0.2
    done
    say "killing $what: ${pids[*]}"
    "${SUDO[@]}" kill -KILL "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + 3))
    while ((SECONDS < deadline)); do
        mapfile -t pids < <("$@")
        [ "${#pids[@]}" -gt 0 ] || return 0
        sleep 0.2
    done
}

# proc_table: one line per process running in the tree: PID PPID NODE,
# NODE being the node a RabbitMQ server runs (a beam.smp started with
# `-s rabbit boot`; its RABBITMQ_NODENAME, "?" if none), else "-". RabbitMQ
# 4's beam.smp does not name its node on its command line; the CLI's
# beam.smp has RABBITMQ_NODENAME too, but not `-s rabbit boot`.
proc_table() {
    [ -d "$ROOT" ] || return 0
    # shellcheck disable=SC2016 # a script for bash -c, with its own $
    "${SUDO[@]}" bash -c '
        root="$(realpath "$1")"
        for p in /proc/[0-9]*; do
            [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] || continue
            stat="$(cat "$p/stat" 2>/dev/null)" || continue
            read -r -a fields <<<"${stat##*) }"
            node=-
            if [[ " $(tr "\0" " " <"$p/cmdline" 2>/dev/null)" == *" -s rabbit boot "* ]]; then
                node="$(tr "\0" "\n" <"$p/environ" 2>/dev/null | sed -n "s/^RABBITMQ_NODENAME=//p")"
                node="${node:-?}"
            fi
            printf "%s %s %s\n" "${p#/proc/}" "${fields[1]}" "$node"
        done' proc_table "$ROOT"
}

# server_nodes: the nodes running in the tree, one a line.
server_nodes() { proc_table | awk '$3 != "-" { print $3 }' | sort -u; }

# node_pids: the PIDs of the node's beam.smp and of its descendants
# (erl_child_setup, inet_gethost, the disk monitor's sh). Not the tree's
# epmd: that one daemonizes, whichever node started it.
node_pids() {
    proc_table | awk -v node="$NODE" '
        { ppid[$1] = $2; if ($3 == node) keep[$1] = 1 }
        END {
            do {
                more = 0
                for (p in ppid) if (!(p in keep) && (ppid[p] in keep)) { keep[p] = 1; more = 1 }
            } while (more)
            for (p in keep) print p
        }'
}

# end_pids_in DIR: SIGTERM, then SIGKILL, the processes rooted in DIR.
end_pids_in() { end_procs "processes in $1" pids_in "$1"; }

# migrate_legacy: a node of the old layout (one node per tree) kept its
# data in the tree's /var/lib/rabbitmq/mnesia and its log in
# /var/log/rabbitmq: move them into its directory (same node name, so the
# data stays valid).
migrate_legacy() {
    local old="$ROOT/var/lib/rabbitmq/mnesia" log
    if [ ! -d "$old/$NODE" ] || [ -e "$NODE_DIR/mnesia/$NODE" ]; then return 0; fi
    say "moving $NODE's data from $old (the old layout) to $NODE_DIR/mnesia"
    "${SUDO[@]}" mkdir -p "$NODE_DIR/mnesia" "$NODE_DIR/log"
    "${SUDO[@]}" mv "$old/$NODE" "$NODE_DIR/mnesia/"
    if [ -e "$old/$NODE-feature_flags" ]; then
        "${SUDO[@]}" mv "$old/$NODE-feature_flags" "$NODE_DIR/mnesia/"
    fi
    "${SUDO[@]}" rm -rf "$old/$NODE-plugins-expand" "$old/$NODE.pid"
    "${SUDO[@]}" rmdir "$old" 2>/dev/null || true
    for log in "$ROOT/var/log/rabbitmq/$NODE"*.log; do
        if [ -e "$log" ]; then "${SUDO[@]}" mv "$log" "$NODE_DIR/log/"; fi
    done
}

# write_config: the node's directory and files; the tree's
# /etc/rabbitmq/rabbitmq-env.conf (the tree's epmd, for rabbitmq-* run by
# hand in the root; the old layout's rabbitmq.conf there goes).
write_config() {
    local etc="$ROOT/etc/rabbitmq" setting
    "${SUDO[@]}" mkdir -p "$NODE_DIR/mnesia" "$NODE_DIR/log" "$NODE_DIR/conf.d" "$etc"
    {
        printf 'listeners.tcp.default = 127.0.0.1:%s\n' "$PORT"
        printf 'loopback_users.guest = true\n'
        if [ -n "${RABBITMQ4_CONF_EXTRA:-}" ]; then
            [ -r "$RABBITMQ4_CONF_EXTRA" ] || die "RABBITMQ4_CONF_EXTRA: cannot read $RABBITMQ4_CONF_EXTRA"
            say "appending $RABBITMQ4_CONF_EXTRA to $NODE's rabbitmq.conf"
            cat "$RABBITMQ4_CONF_EXTRA"
        fi
    } | "${SUDO[@]}" tee "$NODE_DIR/rabbitmq.conf" >/dev/null
    printf '[].\n' | "${SUDO[@]}" tee "$NODE_DIR/enabled_plugins" >/dev/null
    for setting in "${NODE_SETTINGS[@]}"; do
        [[ "$setting" == RABBITMQ_CONF_ENV_FILE=* ]] || printf '%s=%q\n' "${setting%%=*}" "${setting#*=}"
    done | "${SUDO[@]}" tee "$NODE_DIR/rabbitmq-env.conf" >/dev/null
    printf '%s\n' "# The tree's epmd; each node's settings: /var/lib/rabbitmq/nodes/NODE/rabbitmq-env.conf" \
        "ERL_EPMD_PORT=$EPMD_PORT" "ERL_EPMD_ADDRESS=127.0.0.1" "export ERL_EPMD_PORT ERL_EPMD_ADDRESS" |
        "${SUDO[@]}" tee "$etc/rabbitmq-env.conf" >/dev/null
    "${SUDO[@]}" rm -f "$etc/rabbitmq.conf" "$etc/enabled_plugins"
    "${SUDO[@]}" chroot "$ROOT" chown rabbitmq:rabbitmq /var/lib/rabbitmq/nodes
    "${SUDO[@]}" chroot "$ROOT" chown -R rabbitmq:rabbitmq "$NODE_DIR_IN"
}

# port_user PORT: who listens on 127.0.0.1:PORT (or anywhere), if anyone.
port_user() {
    "${SUDO[@]}" ss -Hltnp "sport = :$1" | awk 'NR == 1 { print $4, $6 }'
}

# ours PORT_USER: whether the process port_user names runs in the tree.
ours() {
    local pid pids
    pid="$(grep -o 'pid=[0-9]*' <<<"$1" | head -n 1)" || return 1
    pids="$(pids_in "$ROOT")"
    grep -qFx "${pid#pid=}" <<<"$pids"
}

# log_tail: the end of the node's logs, on stderr.
log_tail() {
    # shellcheck disable=SC2016 # a script for sh -c, with its own $
    "${SUDO[@]}" sh -c 'for f in "$1"/log/*.log "$1"/log/startup_log; do
        if [ -s "$f" ]; then printf "==> %s <==\n" "$f"; tail -n 20 "$f"; fi
    done' sh "$NODE_DIR" >&2 || true
}

# await SECONDS: until the node's application runs and the port answers;
# gives up early if the node's beam.smp is gone.
await() {
    local t0=$SECONDS deadline=$((SECONDS + $1))
    until ctl -q await_startup --timeout 5 >/dev/null 2>&1 && answers; do
        if ((SECONDS >= deadline)); then
            say "$NODE did not start within $1 s; the end of its logs:"
            log_tail
            die "see $NODE_DIR/log/"
        fi
        if ((SECONDS - t0 >= 3)) && [ -z "$(node_pids)" ]; then
            say "$NODE exited while starting; the end of its logs:"
            log_tail
            die "see $NODE_DIR/log/"
        fi
        sleep 1
    done
}

# start_node WAIT: start the node (not running); if WAIT is yes, return
# once it serves.
start_node() {
    local wait=$1 t0=$SECONDS p user
    for p in "$PORT" "$DIST_PORT"; do
        user="$(port_user "$p")"
        [ -z "$user" ] || die "cannot start $NODE: port $p is taken ($user); if that is a hung $NODE, run: scripts/rabbitmq4.sh down (with the same RABBITMQ4_* settings)"
    done
    user="$(port_user "$EPMD_PORT")"
    if [ -n "$user" ] && ! ours "$user"; then
        die "cannot start $NODE: the epmd port $EPMD_PORT is taken ($user), not by this tree's epmd; set RABBITMQ4_EPMD_PORT"
    fi
    "${SUDO[@]}" mountpoint -q "$ROOT/proc" || "${SUDO[@]}" mount -t proc proc "$ROOT/proc"
    migrate_legacy
    write_config
    say "starting $NODE on 127.0.0.1:$PORT (distribution: $DIST_PORT) ..."
    # In the background, in a session of its own, its output (errors in the
    # config included: -detached would lose them) in log/startup_log. The
    # rabbitmq-server script then execs erl instead of staying as a proxy
    # (RUNNING_UNDER_SYSTEMD only means that to it), so the job becomes the
    # node's beam.smp. Nothing of the caller's stays open in it: the node
    # must not hold the pipes of whoever runs this, nor the lock (fd 9).
    # shellcheck disable=SC2016 # a script for sh -c, with its own $
    setsid "${AS_RABBITMQ[@]}" RUNNING_UNDER_SYSTEMD=true ERL_CRASH_DUMP="$NODE_DIR_IN/log/erl_crash.dump" \
        /bin/sh -c 'cd "$1" && exec /usr/lib/rabbitmq/bin/rabbitmq-server >log/startup_log 2>&1' sh "$NODE_DIR_IN" \
        </dev/null >/dev/null 2>&1 9<&- &
    if [ "$wait" = no ]; then
        say "$NODE launched (not waiting for it to serve)"
        return
    fi
    await 120
    say "$NODE running RabbitMQ $(probe) on 127.0.0.1:$PORT (started in $((SECONDS - t0)) s)"
}

# with_lock CMD...: CMD while holding $ROOT.lock (one up/down at a time).
with_lock() {
    "${SUDO[@]}" mkdir -p "$(dirname "$ROOT")"
    "${SUDO[@]}" touch "$ROOT.lock"
    exec 9<"$ROOT.lock"
    if ! flock -n 9; then
        say "waiting for another rabbitmq4.sh up/down/remove/purge to finish ($ROOT.lock) ..."
        flock -w 600 9 || die "$ROOT.lock still taken after 600 s"
    fi
    "$@"
}

# probe: "down" if the node does not answer, "booting" while it starts,
# "stopped" if it runs without its application (stop_app), else the
# version it runs, e.g. 4.3.6. One rabbitmqctl call (~0.5 s).
probe() {
    local out
    if installed && proc_mounted &&
        out="$(ctl -q eval 'case rabbit:is_running() of true -> rabbit_misc:version(); false -> case rabbit:is_booting() of true -> booting; false -> stopped end end.' 2>/dev/null)"; then
        out="${out//\"/}"
        printf '%s\n' "${out:-down}"
    else
        printf 'down\n'
    fi
}

# up WAIT (yes or no)
up() {
    local wait=$1 state
    installed || make_root
    state="$(probe)"
    case "$state" in
    down)
        if [ -z "$(node_pids)" ]; then
            start_node "$wait"
            return
        fi
        say "$NODE's beam.smp runs but does not answer yet ..."
        ;;
    stopped)
        say "$NODE runs but its application is stopped: start_app ..."
        # start_app returns once the application runs; without waiting,
        # do not wait for it either.
        if [ "$wait" = no ]; then
            (ctl -q start_app </dev/null >/dev/null 2>&1 9<&- &)
            say "$NODE: start_app launched (not waiting for it)"
            return
        fi
        ctl -q start_app >/dev/null
        ;;
    booting) say "$NODE is starting ..." ;;
    esac
    [ -z "${RABBITMQ4_CONF_EXTRA:-}" ] ||
        say "note: $NODE was already running; RABBITMQ4_CONF_EXTRA applies when it starts (down first)"
    [ "$wait" = yes ] || return 0
    case "$state" in
    down | stopped | booting) await 120 ;;
    *) answers || await 120 ;;
    esac
    say "$NODE running RabbitMQ $(probe) on 127.0.0.1:$PORT"
}

down() {
    local t0=$SECONDS
    if [ ! -d "$ROOT" ]; then
        say "$NODE: not installed ($ROOT does not exist)"
        return
    fi
    if [ "$(probe)" != down ]; then
        say "stopping $NODE ..."
        ctl -q shutdown >/dev/null 2>&1 || say "rabbitmqctl shutdown failed; ending its processes"
    fi
    end_procs "$NODE's processes" node_pids
    # The last node of the tree: its epmd (and whatever else is left) and
    # its /proc go too.
    if [ -z "$(server_nodes)" ]; then
        end_pids_in "$ROOT"
        unmount_all "$ROOT"
    fi
    say "$NODE stopped ($((SECONDS - t0)) s)"
}

remove() {
    down
    if [ -d "$NODE_DIR" ]; then
        say "deleting $NODE_DIR ..."
        "${SUDO[@]}" rm -rf --one-file-system "$NODE_DIR"
    fi
}

purge() {
    local dir node nodes
    if [ -d "$ROOT" ]; then
        mapfile -t nodes < <(server_nodes)
        for node in "${nodes[@]}"; do
            [ "$node" != "?" ] || continue
            say "stopping $node ..."
            ctl -q -n "$node" shutdown >/dev/null 2>&1 || say "rabbitmqctl shutdown of $node failed"
        done
    fi
    for dir in "$ROOT" "$ROOT.new"; do
        [ -d "$dir" ] || continue
        end_pids_in "$dir"
        unmount_all "$dir"
        if findmnt -rn -o TARGET | grep -qF "$("${SUDO[@]}" realpath "$dir")/"; then
            die "something is still mounted under $dir; not deleting it"
        fi
        say "deleting $dir ..."
        "${SUDO[@]}" rm -rf --one-file-system "$dir"
    done
}

status() {
    if ! installed; then
        printf '%s not installed (no %s)\n' "$NODE" "$ROOT"
        return 3
    fi
    local state
    state="$(probe)"
    case "$state" in
    down)
        printf '%s not running\n' "$NODE"
        return 3
        ;;
    booting)
        printf '%s node up, application starting\n' "$NODE"
        return 3
        ;;
    stopped)
        printf '%s node up, application stopped\n' "$NODE"
        return 3
        ;;
    esac
    if ! answers; then
        printf '%s running RabbitMQ %s, but nothing answers on 127.0.0.1:%s\n' "$NODE" "$state" "$PORT"
        return 3
    fi
    printf '%s running RabbitMQ %s on 127.0.0.1:%s\n' "$NODE" "$state" "$PORT"
}

version() {
    installed || die "not installed (no $ROOT); run: scripts/rabbitmq4.sh up"
    local v
    v="$(probe)"
    case "$v" in down | stopped | booting) v="$(package_version)" ;; esac
    printf '%s\n' "$v"
}

usage() {
    say "usage: scripts/rabbitmq4.sh up [--no-wait]|down [--purge]|remove|purge|status|nodes|dir|url|env|version|ctl ARGS..."
    exit 2
}

case "${1:-}" in
up)
    case "${2:-}" in
    "") with_lock up yes ;;
    --no-wait) with_lock up no ;;
    *) usage ;;
    esac
    ;;
down)
    case "${2:-}" in
    "") with_lock down ;;
    --purge) with_lock purge ;;
    *) usage ;;
    esac
    ;;
remove) with_lock remove ;;
purge) with_lock purge ;;
status) status ;;
nodes) server_nodes ;;
dir) printf '%s\n' "$NODE_DIR" ;;
url) url ;;
env)
    printf 'AMQP_URL=%q\n' "$(url)"
    printf 'RABBITMQCTL=%q\n' "$HERE/rabbitmqctl4"
    # Another node or tree: rabbitmqctl4 needs to know which.
    [ -z "${RABBITMQ4_ROOT:-}" ] || printf 'RABBITMQ4_ROOT=%q\n' "$ROOT"
    [ -z "${RABBITMQ4_PORT:-}" ] || printf 'RABBITMQ4_PORT=%q\n' "$PORT"
    [ -z "${RABBITMQ4_NODENAME:-}" ] || printf 'RABBITMQ4_NODENAME=%q\n' "$NODE"
    [ -z "${RABBITMQ4_DIST_PORT:-}" ] || printf 'RABBITMQ4_DIST_PORT=%q\n' "$DIST_PORT"
    [ -z "${RABBITMQ4_EPMD_PORT:-}" ] || printf 'RABBITMQ4_EPMD_PORT=%q\n' "$EPMD_PORT"
    ;;
version) version ;;
ctl)
    shift
    installed || die "not installed (no $ROOT); run: scripts/rabbitmq4.sh up"
    ctl "$@"
    ;;
*) usage ;;
esac

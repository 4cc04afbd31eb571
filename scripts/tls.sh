#!/usr/bin/env bash
# A TLS test bed on this machine, beside the default broker (which it never
# touches): certificates made with openssl, and two RabbitMQ 3.10 nodes (the
# host's Debian package, as scripts/cluster.sh runs its nodes) that speak
# AMQP only over TLS:
#
#   tls1@localhost  amqps on 127.0.0.1:5711  verify_peer,
#                   fail_if_no_peer_cert = false: a client certificate is
#                   checked when one is presented, and not required
#   tls2@localhost  amqps on 127.0.0.1:5712  verify_peer,
#                   fail_if_no_peer_cert = true: mutual TLS, a client without
#                   a certificate is refused in the handshake
#
# (RabbitMQ's ssl_options apply to every TLS listener of a node, so the two
# behaviours take two nodes.) Erlang distribution on 25711 and 25712, no
# plain AMQP listener, no management. Each node offers PLAIN, AMQPLAIN and
# EXTERNAL (plugin rabbitmq_auth_mechanism_ssl, in the node's own
# enabled_plugins file; the user name is the client certificate's CN:
# ssl_cert_login_from = common_name), and guest/guest (loopback only, as on
# any node). tls2 has the user rabbit-rpc-tls-client too, the client
# certificate's CN, without a password (EXTERNAL only), with every
# permission on vhost /; tls1 has not, so there the certificate is
# accepted in the handshake but names no user.
#
# Certificates, in $(scripts/tls.sh dir) = /var/lib/rabbitmq/tls/certs
# (P-256 keys, PEM; test material only, trusted by nothing but these nodes):
#
#   ca.pem                       the CA the nodes and clients trust
#   server.pem, server.key       the nodes': CN localhost, SAN DNS:localhost
#                                and IP:127.0.0.1, signed by ca.pem
#   client.pem, client.key       CN rabbit-rpc-tls-client, signed by ca.pem
#   untrusted-ca.pem             a second CA, which nothing trusts
#   untrusted.pem, untrusted.key CN localhost (SAN as server.pem, server and
#                                client use), signed by untrusted-ca.pem
#
# The client files are readable by every user (tests need not run as root);
# the CAs' keys only by root, the nodes' key by root and rabbitmq.
#
#   scripts/tls.sh up       make the certificates if missing (or expiring
#                           within a day), start the nodes that are not
#                           running, create the users; idempotent, about a
#                           second when all is up already
#   scripts/tls.sh down     stop the nodes, delete their data and the
#                           certificates
#   scripts/tls.sh status   each node: running or not, and its port
#   scripts/tls.sh urls     one line per use: NAME URL (guest over TLS with
#                           the CA file, on each node; mutual TLS with
#                           EXTERNAL on tls2)
#   scripts/tls.sh dir      the certificates' directory
#   scripts/tls.sh ctl N ARGS...
#                           the host's rabbitmqctl -n tlsN@localhost ARGS
#                           (whatever RABBITMQCTL says: the tests of the
#                           RabbitMQ 4.3 pass use this bed too)
#
# Data, logs and config under /var/lib/rabbitmq/tls/tlsN, owned by rabbitmq;
# the host's epmd and cookie; rabbitmqctl -n tlsN@localhost reaches node N.
# Needs root or sudo. Both nodes come up in about 10-15 s on 2 cores.
set -euo pipefail

NODES=(1 2)
BASE=/var/lib/rabbitmq/tls
CERTS="$BASE/certs"
AMQPS_PORT=5710
DIST_PORT=25710
CLIENT_USER=rabbit-rpc-tls-client
LOCK="${TMPDIR:-/tmp}/rabbit-rpc-tls.lock"

say() { printf '%s\n' "$*" >&2; }
die() {
    say "tls.sh: $*"
    exit 1
}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

node() { printf 'tls%s@localhost' "$1"; }
port() { printf '%s' "$((AMQPS_PORT + $1))"; }

# ctl N ARGS...: rabbitmqctl against node N, within 60 s.
ctl() {
    local n=$1
    shift
    # Not holding the lock (fd 9): rabbitmqctl may start epmd, which stays.
    timeout 60 "${SUDO[@]}" rabbitmqctl -q -n "$(node "$n")" "$@" 9>&-
}

running() { ctl "$1" ping >/dev/null 2>&1; }

# holder PORT: the process listening on 127.0.0.1:PORT, as "NAME PID", or
# nothing.
holder() {
    local line pid name
    line="$("${SUDO[@]}" ss -Hltnp "sport = :$1" | awk 'NR == 1')"
    [ -n "$line" ] || return 0
    pid="$(grep -o 'pid=[0-9]*' <<<"$line" | head -n 1)" || true
    name="$(grep -o '(("[^"]*"' <<<"$line" | head -n 1)" || true
    name="${name#((\"}"
    printf '%s %s\n' "${name%\"}" "${pid#pid=}"
}

# node_of PID: the RABBITMQ_NODENAME of a beam.smp process.
node_of() {
    "${SUDO[@]}" cat "/proc/$1/environ" 2>/dev/null | tr '\0' '\n' |
        sed -n 's/^RABBITMQ_NODENAME=//p'
}

# check_ports N: fail (one line) if anything but node N holds its ports.
check_ports() {
    local n=$1 p h
    for p in "$(port "$n")" "$((DIST_PORT + n))"; do
        h="$(holder "$p")"
        [ -n "$h" ] || continue
        # shellcheck disable=SC2086 # NAME PID
        set -- $h
        if [ "$1" = beam.smp ] && [ "$(node_of "$2")" = "$(node "$n")" ]; then
            continue
        fi
        die "cannot start $(node "$n"): 127.0.0.1:$p is held by $1 (pid $2)"
    done
}

# await N SECONDS: until node N's application serves (await_startup fails
# while the node is still registering, so retry it).
await() {
    local n=$1 deadline=$((SECONDS + $2))
    until ctl "$n" await_startup >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$(node "$n") did not start within $2 s; its log: $BASE/tls$n/log"
        sleep 1
    done
}

# certs_fresh: whether every certificate exists and is good for a day more.
certs_fresh() {
    local f
    for f in ca untrusted-ca server client untrusted; do
        "${SUDO[@]}" test -s "$CERTS/$f.pem" || return 1
        "${SUDO[@]}" openssl x509 -checkend 86400 -noout -in "$CERTS/$f.pem" >/dev/null 2>&1 || return 1
    done
    for f in server client untrusted; do
        "${SUDO[@]}" test -s "$CERTS/$f.key" || return 1
    done
}

# ca NAME CN: a self-signed CA certificate and its key.
ca() {
    "${SUDO[@]}" openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$CERTS/$1.key" -out "$CERTS/$1.pem" -days 3650 -subj "/CN=$2" \
        -addext "basicConstraints = critical, CA:TRUE" \
        -addext "keyUsage = critical, keyCertSign, cRLSign" \
        -addext "subjectKeyIdentifier = hash" 2>/dev/null
}

# leaf NAME CA CN USES [SAN]: a certificate signed by CA, for USES
# (serverAuth, clientAuth or both).
leaf() {
    local name=$1 issuer=$2 cn=$3 uses=$4 san=${5:-}
    local ext
    ext="basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $uses
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer"
    [ -z "$san" ] || ext="$ext
subjectAltName = $san"
    "${SUDO[@]}" openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$CERTS/$name.key" -out "$CERTS/$name.csr" -subj "/CN=$cn" 2>/dev/null
    "${SUDO[@]}" openssl x509 -req -in "$CERTS/$name.csr" -CA "$CERTS/$issuer.pem" \
        -CAkey "$CERTS/$issuer.key" -set_serial "0x$(openssl rand -hex 16)" -days 825 \
        -extfile <(printf '%s\n' "$ext") -out "$CERTS/$name.pem" 2>/dev/null
    "${SUDO[@]}" rm -f "$CERTS/$name.csr"
}

make_certs() {
    say "making certificates in $CERTS ..."
    "${SUDO[@]}" rm -rf "$CERTS"
    "${SUDO[@]}" mkdir -p "$CERTS"
    ca ca "rabbit-rpc test CA"
    ca untrusted-ca "rabbit-rpc untrusted test CA"
    leaf server ca localhost serverAuth "DNS:localhost, IP:127.0.0.1"
    leaf client ca "$CLIENT_USER" clientAuth
    leaf untrusted untrusted-ca localhost "serverAuth, clientAuth" "DNS:localhost, IP:127.0.0.1"
    "${SUDO[@]}" chown root:rabbitmq "$CERTS" "$CERTS/server.key"
    "${SUDO[@]}" chmod 0755 "$CERTS"
    "${SUDO[@]}" chmod 0644 "$CERTS"/*.pem "$CERTS/client.key" "$CERTS/untrusted.key"
    "${SUDO[@]}" chmod 0640 "$CERTS/server.key"
    "${SUDO[@]}" chmod 0600 "$CERTS/ca.key" "$CERTS/untrusted-ca.key"
}

start_node() {
    local n=$1 dir="$BASE/tls$1" required=false
    [ "$n" = 2 ] && required=true
    "${SUDO[@]}" mkdir -p "$dir/mnesia" "$dir/log"
    "${SUDO[@]}" tee "$dir/rabbitmq.conf" >/dev/null <<EOF
listeners.tcp = none
listeners.ssl.default = 127.0.0.1:$(port "$n")
ssl_options.cacertfile = $CERTS/ca.pem
ssl_options.certfile = $CERTS/server.pem
ssl_options.keyfile = $CERTS/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = $required
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
loopback_users.guest = true
EOF
    printf '[rabbitmq_auth_mechanism_ssl].\n' | "${SUDO[@]}" tee "$dir/enabled_plugins" >/dev/null
    "${SUDO[@]}" chown -R rabbitmq:rabbitmq "$dir"
    say "starting $(node "$n") on 127.0.0.1:$(port "$n") (amqps) ..."
    "${SUDO[@]}" env \
        RABBITMQ_NODENAME="$(node "$n")" \
        RABBITMQ_DIST_PORT="$((DIST_PORT + n))" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
        rabbitmq-server -detached >/dev/null 9>&-
}

# users N: the certificate's user on node 2, and not on node 1, where the
# certificate names no user (guest is on both from their first start).
users() {
    local n=$1 listed=false
    # Read whole before grep: grep -q would cut rabbitmqctl off (pipefail).
    if grep -q "^${CLIENT_USER}[[:space:]]" <<<"$(ctl "$n" list_users)"; then listed=true; fi
    if [ "$n" = 1 ]; then
        if $listed; then ctl "$n" delete_user "$CLIENT_USER" >/dev/null; fi
        return
    fi
    if ! $listed; then
        # A password is needed to create a user; it is cleared at once, so
        # only EXTERNAL logs it in.
        ctl "$n" add_user "$CLIENT_USER" "$(openssl rand -hex 16)" >/dev/null
        ctl "$n" clear_password "$CLIENT_USER" >/dev/null
    fi
    ctl "$n" set_permissions -p / "$CLIENT_USER" ".*" ".*" ".*" >/dev/null
}

up() {
    local t0=$SECONDS n fresh=true
    command -v rabbitmq-server >/dev/null 2>&1 ||
        die "rabbitmq-server is not installed; run scripts/ensure-rabbitmq.sh first"
    command -v openssl >/dev/null 2>&1 || die "openssl is not installed (apt-get install openssl)"
    certs_fresh || fresh=false
    # Fast path: both nodes answer, with certificates good for a day.
    if $fresh && "${SUDO[@]}" test -e "$BASE/ready"; then
        local pids=()
        for n in "${NODES[@]}"; do
            running "$n" &
            pids+=("$!")
        done
        if wait "${pids[0]}" && wait "${pids[1]}"; then
            say "TLS bed up: tls1 on 127.0.0.1:5711, tls2 (client certificate required) on 127.0.0.1:5712 ($((SECONDS - t0)) s)"
            return
        fi
    fi
    "${SUDO[@]}" rm -f "$BASE/ready"
    if ! $fresh; then
        # Nodes started with other certificates would keep them.
        for n in "${NODES[@]}"; do
            if running "$n"; then ctl "$n" stop >/dev/null || true; fi
        done
        make_certs
    fi
    for n in "${NODES[@]}"; do
        if ! running "$n"; then
            check_ports "$n"
            start_node "$n"
        fi
    done
    for n in "${NODES[@]}"; do
        await "$n" 120
        users "$n"
    done
    "${SUDO[@]}" touch "$BASE/ready"
    say "TLS bed up: tls1 on 127.0.0.1:5711, tls2 (client certificate required) on 127.0.0.1:5712 ($((SECONDS - t0)) s)"
}

down() {
    local t0=$SECONDS n
    for n in "${NODES[@]}"; do
        if running "$n"; then
            say "stopping $(node "$n") ..."
            ctl "$n" stop >/dev/null || true
        fi
    done
    "${SUDO[@]}" rm -rf "$BASE"
    say "TLS bed down ($((SECONDS - t0)) s)"
}

status() {
    local n
    for n in "${NODES[@]}"; do
        if running "$n"; then
            printf '%s  running, AMQPS on 127.0.0.1:%s\n' "$(node "$n")" "$(port "$n")"
        else
            printf '%s  not running\n' "$(node "$n")"
        fi
    done
}

urls() {
    printf 'tls1 amqps://guest:guest@localhost:5711/%%2f?cacertfile=%s/ca.pem\n' "$CERTS"
    printf 'tls2 amqps://guest:guest@localhost:5712/%%2f?cacertfile=%s/ca.pem&certfile=%s/client.pem&keyfile=%s/client.key\n' "$CERTS" "$CERTS" "$CERTS"
    printf 'external amqps://localhost:5712/%%2f?cacertfile=%s/ca.pem&certfile=%s/client.pem&keyfile=%s/client.key&auth_mechanism=external\n' "$CERTS" "$CERTS" "$CERTS"
}

# One up or down at a time: tests of several binaries may ask at once. The
# nodes and rabbitmqctl are started without the lock's descriptor, or the
# nodes would hold the lock for as long as they run.
locked() {
    exec 9>"$LOCK"
    flock 9
    "$@"
}

case "${1:-}" in
up) locked up ;;
down) locked down ;;
status) status ;;
urls) urls ;;
dir) printf '%s\n' "$CERTS" ;;
ctl)
    [[ "${2:-}" =~ ^[12]$ ]] || die "name a node: 1 or 2"
    n=$2
    shift 2
    exec timeout 60 "${SUDO[@]}" rabbitmqctl -n "$(node "$n")" "$@"
    ;;
*)
    say "usage: scripts/tls.sh up|down|status|urls|dir|ctl N ARGS..."
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Runs every test against a real local RabbitMQ (started or installed first
# if needed). The cluster tests start a 3-node cluster beside it
# (scripts/cluster.sh up); if it was not already running, it is removed
# again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-rabbitmq.sh
cluster=$(scripts/cluster.sh status 2>/dev/null || true)
if [ "$(grep -c "running, AMQP" <<<"$cluster")" -ne 3 ]; then
    trap 'scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT
fi
cargo test --workspace --locked

#!/usr/bin/env bash
# Runs every test against a real local RabbitMQ (started or installed first
# if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-rabbitmq.sh
cargo test --workspace --locked

#!/usr/bin/env bash
# The main job, from nothing: make sure RabbitMQ runs locally, build, start
# the fibonacci server, ask it fib(30), show the answer, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-rabbitmq.sh

echo "Building rabbit-rpc (release)…"
cargo build --release --locked --quiet
bin=target/release/rabbit-rpc

log=$(mktemp)
"$bin" serve fib 2>"$log" &
server=$!
stop_server() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -f "$log"
}
trap stop_server EXIT

# Wait for the server's "ready" line (or its death), for at most 30 s.
deadline=$((SECONDS + 30))
until grep -q "serving fib on queue" "$log"; do
  if ! kill -0 "$server" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "The fib server did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done
sed 's/^/server: /' "$log"

answer=$("$bin" call 30)
echo "fib(30) = $answer"

#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672.
#   - one already answers: reuse it (nothing else is touched);
#   - installed but stopped: start it;
#   - not installed: install Debian/Ubuntu's rabbitmq-server package, start it.
# Idempotent; safe to run any number of times.
set -euo pipefail

HOST=127.0.0.1
PORT=5672

answers() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if answers; then
  echo "RabbitMQ: running on $HOST:$PORT"
  exit 0
fi

if [ ! -x /usr/sbin/rabbitmq-server ] && ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "RabbitMQ: not installed; installing the distribution's rabbitmq-server package"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi

# The package's post-install may have started it already.
if ! answers; then
  echo "RabbitMQ: starting"
  if [ -d /run/systemd/system ]; then
    as_root systemctl start rabbitmq-server
  else
    # No systemd (containers, CI sandboxes): run it detached.
    as_root rabbitmq-server -detached
  fi
fi

deadline=$((SECONDS + 120))
until answers; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "RabbitMQ: did not come up on $HOST:$PORT within 120 s; see /var/log/rabbitmq/" >&2
    exit 1
  fi
  sleep 1
done
# The port opens before the broker has finished booting; wait for that too.
as_root rabbitmqctl await_startup >/dev/null 2>&1 || true
echo "RabbitMQ: running on $HOST:$PORT"

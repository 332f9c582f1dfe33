#!/usr/bin/env bash
# Local SQS for the integration tests: moto's server on 127.0.0.1:$MOTO_PORT (default 5320).
#   scripts/moto.sh start   install moto[server] if absent, start it detached, print the endpoint
#   scripts/moto.sh stop    stop the server started here (pid in .cache/moto.pid)
#   scripts/moto.sh status  print the endpoint if it answers
# The tests (tests/src/moto.rs) use the same port, pid file and lock, so a server started
# by either is reused by the other. Export SQS_ENDPOINT to point the tests elsewhere.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache"
port="${MOTO_PORT:-5320}"
endpoint="http://127.0.0.1:$port"
pidfile="$cache/moto.pid"

answers() {
  # Any HTTP answer on the port counts (moto serves /moto-api/).
  curl --silent --max-time 2 --output /dev/null "$endpoint/moto-api/" 2>/dev/null
}

start() {
  mkdir -p "$cache"
  if answers; then echo "$endpoint"; return 0; fi
  # The launcher runs moto's server in this python3, so moto must be importable here.
  if ! python3 -c "import moto.server" >/dev/null 2>&1; then
    echo "installing moto[server]..." >&2
    python3 -m pip install --quiet "moto[server]"
  fi
  (
    # Same lock as the test harness, so the two never start a server each.
    flock 9
    if ! answers; then
      # moto's server with each queue's message operations serialised (see the script).
      setsid python3 "$root/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$cache/moto.log" 2>&1 </dev/null &
      echo $! >"$pidfile"
    fi
  ) 9>"$cache/moto.lock"
  for _ in $(seq 1 150); do
    if answers; then echo "$endpoint"; return 0; fi
    sleep 0.2
  done
  echo "moto_server did not answer on $endpoint; see $cache/moto.log" >&2
  return 1
}

stop() {
  if [[ -f "$pidfile" ]]; then
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
    rm -f "$pidfile"
    echo "stopped moto (pid $pid)"
  else
    echo "no moto pid file at $pidfile" >&2
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if answers; then echo "$endpoint"; else echo "not running on $endpoint" >&2; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

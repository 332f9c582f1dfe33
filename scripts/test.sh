#!/usr/bin/env bash
# Runs every test of profile-relay on this machine: formatting, lints, unit, property and
# integration tests (against a real DynamoDB Local and a local SQS that this script starts,
# installing them first when absent). Exits non-zero on the first failure.
#
#   ./scripts/test.sh
#
# Set DYNAMODB_ENDPOINT / SQS_ENDPOINT to use servers you already run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "template: sam validate --lint, cfn-lint"
./scripts/check-template.sh

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "local services"
started=()
cleanup() { for svc in "${started[@]}"; do "./scripts/$svc.sh" stop >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
if [ -z "${SQS_ENDPOINT:-}" ]; then
  SQS_ENDPOINT="$(./scripts/moto.sh start)"; export SQS_ENDPOINT; started+=(moto)
fi
echo "SQS (moto):      $SQS_ENDPOINT"
if [ -z "${DYNAMODB_ENDPOINT:-}" ]; then
  DYNAMODB_ENDPOINT="$(./scripts/dynamodb-local.sh start)"; export DYNAMODB_ENDPOINT; started+=(dynamodb-local)
fi
echo "DynamoDB Local:  $DYNAMODB_ENDPOINT"

step "headless Chromium (the dashboard test)"
if [ -z "${CHROMEDRIVER:-}" ] && ! command -v chromedriver >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing Debian's chromium and chromium-driver..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
echo "chromedriver:    $(${CHROMEDRIVER:-chromedriver} --version 2>/dev/null | head -1)"

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

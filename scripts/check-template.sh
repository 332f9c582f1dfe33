#!/usr/bin/env bash
# Validates template.yaml offline with the real tools, one line per check:
#   1. `sam validate --lint`  (SAM transform + cfn-lint on the transformed template)
#   2. `cfn-lint`             (on the source template, with the SAM transform applied)
# Exits non-zero on any error or warning either tool reports.
#
# Installs aws-sam-cli and cfn-lint into .cache/sam-venv on first use (a virtualenv, so they
# never change the packages other scripts rely on, e.g. moto); later runs reuse it and need no
# network. No AWS credentials are needed or used.
#
#   ./scripts/check-template.sh [template.yaml]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
template="${1:-$root/template.yaml}"
venv="$root/.cache/sam-venv"

export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0
export SAM_CLI_DISABLE_UPDATE_CHECK=1 # no version lookup over the network

if ! "$venv/bin/sam" --version >/dev/null 2>&1 || ! "$venv/bin/cfn-lint" --version >/dev/null 2>&1; then
  echo "installing aws-sam-cli and cfn-lint into $venv ..." >&2
  mkdir -p "$root/.cache"
  (
    # Two callers at once (e.g. two test runs) install once.
    flock 9
    if ! "$venv/bin/sam" --version >/dev/null 2>&1 || ! "$venv/bin/cfn-lint" --version >/dev/null 2>&1; then
      python3 -m venv "$venv"
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check aws-sam-cli cfn-lint
    fi
  ) 9>"$root/.cache/sam-venv.lock"
fi

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
failed=0

# Runs one check; prints one line, and the tool's output only when it fails.
check() {
  local name="$1"
  shift
  if "$@" >"$out" 2>&1; then
    echo "ok   $name"
  else
    echo "FAIL $name"
    sed 's/^/     /' "$out"
    failed=1
  fi
}

cd "$root"
check "sam validate --lint ($(basename "$template"))" \
  "$venv/bin/sam" validate --lint --template "$template" --region "$AWS_DEFAULT_REGION"
check "cfn-lint ($(basename "$template"))" \
  "$venv/bin/cfn-lint" --regions "$AWS_DEFAULT_REGION" -- "$template"

exit "$failed"

#!/usr/bin/env bash
# Builds the four Lambda bundles (arm64, release) with cargo-lambda and prints each
# bootstrap's size. A deployment aid, not a test: CI does not run it (a cold build takes
# minutes on two cores).
#
#   ./scripts/build-lambdas.sh            # bundles in $CARGO_TARGET_DIR/lambda/<name>/bootstrap
#
# Installs what it needs when absent: cargo-lambda (from PyPI, into .cache/lambda-venv; the
# `ziglang` package it depends on provides the zig cross-linker) and the Rust target
# aarch64-unknown-linux-gnu (rustup). Honours CARGO_TARGET_DIR (default: ./target).
# `sam build` does the same build per function (see docs/deploy.md); it needs the default
# ./target, because SAM copies target/lambda/<name>/bootstrap from the workspace root.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
functions=(form-signup crm-change event-sync sync-worker)
venv="$root/.cache/lambda-venv"

if ! cargo lambda --version >/dev/null 2>&1; then
  if [[ ! -x "$venv/bin/cargo-lambda" ]]; then
    echo "installing cargo-lambda into $venv ..." >&2
    mkdir -p "$root/.cache"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check cargo-lambda
  fi
  # cargo finds `cargo-lambda` on PATH; cargo-lambda finds zig through this venv's python.
  export PATH="$venv/bin:$PATH"
fi

if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  echo "adding Rust target aarch64-unknown-linux-gnu ..." >&2
  rustup target add aarch64-unknown-linux-gnu
fi

# `--bin` (not `--package`), like `sam build` (which runs `cargo lambda build --release --arm64
# --bin <name>` at the workspace root): the same feature resolution, so the same binaries,
# and a `sam build` after this script reuses its compiled dependencies.
bins=()
for f in "${functions[@]}"; do bins+=(--bin "$f"); done

start=$(date +%s)
cargo lambda build --release --arm64 --locked "${bins[@]}"
elapsed=$(($(date +%s) - start))

target_dir="${CARGO_TARGET_DIR:-$root/target}"
echo
echo "built in ${elapsed}s (arm64, release):"
for f in "${functions[@]}"; do
  bin="$target_dir/lambda/$f/bootstrap"
  if [[ ! -f "$bin" ]]; then
    echo "missing bundle: $bin" >&2
    exit 1
  fi
  bytes=$(stat -c %s "$bin")
  printf '  %-12s %10d bytes  %6s MiB  %s\n' "$f" "$bytes" \
    "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')" "$bin"
done

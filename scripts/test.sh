#!/usr/bin/env bash
# The project's test command (README.md): builds the binaries the end-to-end tests drive, then
# runs every test of every crate in release mode (training tests are too slow in debug).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --release --no-fail-fast
else
    cargo test --workspace --release --no-fail-fast
fi

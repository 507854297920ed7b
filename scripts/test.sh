#!/usr/bin/env bash
# The project's test command (README.md): prepares the Python environment the ONNX checks use,
# builds what the main job builds (scripts/build.sh, so the main job afterwards builds nothing),
# then the tests, and runs every test of every crate in release mode (training tests are too
# slow in debug).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/python-env.sh tests/onnx/requirements.txt

./scripts/build.sh
cargo build --release --workspace --bins --tests
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --release --no-fail-fast
else
    cargo test --workspace --release --no-fail-fast
fi

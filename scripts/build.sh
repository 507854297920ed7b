#!/usr/bin/env bash
# The one build both README commands start from, so that neither rebuilds what the other built:
# the workspace's binaries (the trainer, and serving as the tests drive it), then the shipped
# `serving` built on its own (`cargo build -p serving --release`, so no training crate's
# features are unified into it) in `<target>/serving-alone/`, where the tests look for it too.
# Prints where the binaries are. A second run builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --workspace --bins
cargo build --release -p serving --target-dir "$target/serving-alone"
echo "trainer: $target/release/trainer" >&2
echo "serving (shipped): $target/serving-alone/release/serving" >&2

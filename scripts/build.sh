#!/usr/bin/env bash
# The one build both README commands start from, so that neither rebuilds what the other
# built: the workspace's binaries, `trainer` and `serving`, with the features the whole
# workspace resolves to. The test build then finds every dependency built: tests/Cargo.toml
# carries every dev-dependency as a normal dependency, so both builds resolve one feature set
# (tests/end_to_end/build_once.rs keeps it so). The binary that ships is
# `cargo build --release -p serving` on its own, with no training crate's features unified
# into it; the tests build that one too (in `<target>/serving-alone/`) and check it predicts
# the same bits and links no training crate. A second run builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --workspace --bins

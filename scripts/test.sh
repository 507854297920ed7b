#!/usr/bin/env bash
# The project's test command (README.md): prepares what the tests need besides Rust
# (scripts/test-env.sh: the Python environment and a Java runtime), builds what the main job
# builds (scripts/build.sh, so the main job afterwards builds nothing), then the tests, and runs
# every test of every crate in release mode (training tests are too slow in debug).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/test-env.sh

./scripts/build.sh
cargo build --release --workspace --bins --tests
# The embedding example on shared-inference's front page compiles (nextest runs no doctests);
# the whole workspace, so that the build above is reused rather than made again for one crate.
cargo test --workspace --doc --release
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --release --no-fail-fast
else
    cargo test --workspace --release --no-fail-fast
fi

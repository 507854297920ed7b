#!/usr/bin/env bash
# The main job (README.md): build (scripts/build.sh, shared with the test command), train the
# bundled recipes into ./artifacts, then serve them on 127.0.0.1:8000 until interrupted. Extra
# arguments go to `serving serve` (for example --addr). It serves the workspace build of
# `serving`, which predicts the same bits as the shipped one (tests/end_to_end/parity.rs) and
# costs no second build; for production, build the shipped binary: cargo build --release -p serving.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build.sh
target="${CARGO_TARGET_DIR:-$PWD/target}"
for recipe in configs/penguins.toml configs/diamonds.toml; do
    "$target/release/trainer" train --config "$recipe" --out artifacts
done
exec "$target/release/serving" serve --model-repository artifacts "$@"

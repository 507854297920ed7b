#!/usr/bin/env bash
# The main job (README.md): train the bundled recipes into ./artifacts, then serve them on
# 127.0.0.1:8000 until interrupted. Extra arguments go to `serving serve` (for example --addr).
set -euo pipefail
cd "$(dirname "$0")/.."

for recipe in configs/penguins.toml configs/diamonds.toml; do
    cargo run --release --quiet -p trainer -- train --config "$recipe" --out artifacts
done
# Built on its own, as it ships: no training crate can be unified into it.
exec cargo run --release --quiet -p serving -- serve --model-repository artifacts "$@"

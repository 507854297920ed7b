#!/usr/bin/env bash
# Training at scale on a lent GPU machine: every figure of BENCHMARKS.md "Training at scale
# (GPU)" in one run, printed as a table at the end (full logs and artifacts' manifests under
# $OUT when the device tool sets it, else target/scale-gpu/).
#
# Build here first (the device machine has no Rust toolchain and no registry), strip, and carry
# the two binaries:
#
#   cargo build --release -p trainer --features cuda && cargo build --release -p serving
#   strip target/release/trainer target/release/serving
#   # device run: command "bash benches/scale_gpu.sh", carry ["target/release/trainer", "target/release/serving"]
#
# What it does, in about 6 minutes on an H100/H200 machine with 16 cores:
# 1. generates the 2,000,000-row data set (Parquet) and a 100,000-row one with
#    benches/scale_data.py (the machine's python3 has numpy and pyarrow);
# 2. trains configs/large-regression.toml and configs/large-classification.toml at 2M rows for
#    EPOCHS epochs (default 2), same seed, on `--device cuda` and on `--device cpu` (all cores);
# 3. trains configs/diamonds.toml for 10 epochs on both devices;
# 4. checks that the CUDA artifacts are served by the CPU `serving predict` with the bits
#    `trainer evaluate --predictions` (CPU) writes for the same rows;
# 5. prints seconds per epoch, rows per second, the CUDA speed-up and both devices' test metrics
#    with the tolerance they must agree within: regression RMSE within 2 % of each other,
#    classification accuracy within 0.5 points.
# It exits non-zero if a step fails or a check does not hold; the goals (CUDA >= 10x the CPU at
# 2M rows, diamonds no slower on CUDA) are reported, not enforced.
set -euo pipefail
cd "$(dirname "$0")/.."

EPOCHS="${EPOCHS:-2}"
ROWS="${ROWS:-2000000}"
# A dry run of the script itself on a machine without a GPU: ROWS=20000 CUDA_DEVICE=cpu.
CUDA_DEVICE="${CUDA_DEVICE:-cuda}"
WORK="${OUT:-target/scale-gpu}"
mkdir -p "$WORK/data" "$WORK/models" "$WORK/logs"
TRAINER=target/release/trainer
SERVING=target/release/serving
PYTHON="${PYTHON:-python3}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
echo "cpu cores: $(nproc)"

"$PYTHON" benches/scale_data.py --rows "$ROWS" --format parquet --out "$WORK/data"
"$PYTHON" benches/scale_data.py --rows 100000 --format csv --out "$WORK/data"

# train NAME DEVICE CONFIG DATA EPOCHS: one run; its manifest is kept as $WORK/models/NAME.json.
train() {
    local name=$1 device=$2 config=$3 data=$4 epochs=$5
    local out="$WORK/models/$name"
    rm -rf "$out"
    "$TRAINER" train --config "$config" --data "$data" --epochs "$epochs" --device "$device" --quiet \
        --out "$out" >"$WORK/logs/$name.out" 2>"$WORK/logs/$name.err" || {
        tail -20 "$WORK/logs/$name.err"
        exit 1
    }
    cp "$out"/*/1/manifest.json "$WORK/models/$name.json"
    echo "trained $name: $(grep '^trained' "$WORK/logs/$name.out")"
}

for task in regression classification; do
    train "large-$task-cuda" "$CUDA_DEVICE" "configs/large-$task.toml" "$WORK/data/$task-$ROWS.parquet" "$EPOCHS"
    train "large-$task-cpu" cpu "configs/large-$task.toml" "$WORK/data/$task-$ROWS.parquet" "$EPOCHS"
done
train diamonds-cuda "$CUDA_DEVICE" configs/diamonds.toml data/diamonds.csv 10
train diamonds-cpu cpu configs/diamonds.toml data/diamonds.csv 10

# The CUDA artifacts on the CPU: serving predict against trainer evaluate, byte for byte.
check_served() {
    local name=$1 data=$2
    local dir
    dir=$(echo "$WORK/models/$name"/*/1)
    "$TRAINER" evaluate --model "$dir" --data "$data" --predictions "$WORK/logs/$name.evaluate.csv" >/dev/null
    "$SERVING" predict --quiet --model "$dir" --input "$data" --output "$WORK/logs/$name.serving.csv" >/dev/null
    # Every column trainer evaluate writes, cell for cell as text (the shortest decimal that
    # reads back to the same f32: equal text is equal bits).
    if "$PYTHON" - "$WORK/logs/$name.evaluate.csv" "$WORK/logs/$name.serving.csv" <<'EOF'
import csv, sys
ours, theirs = (list(csv.reader(open(p))) for p in sys.argv[1:3])
width = len(ours[0])
sys.exit(0 if len(ours) == len(theirs) and all(a == b[:width] for a, b in zip(ours, theirs)) else 1)
EOF
    then
        echo "served on the CPU, bit-identical to trainer evaluate: $name ($(($(wc -l <"$data") - 1)) rows)"
    else
        echo "MISMATCH: serving predict and trainer evaluate differ for $name" >&2
        exit 1
    fi
}
check_served diamonds-cuda data/diamonds.csv
check_served large-regression-cuda "$WORK/data/regression-100000.csv"
check_served large-classification-cuda "$WORK/data/classification-100000.csv"

"$PYTHON" - "$WORK/models" <<'EOF'
import json, statistics, sys
from pathlib import Path
models = Path(sys.argv[1])
def load(name):
    m = json.loads((models / f"{name}.json").read_text())
    p = m["provenance"]
    s = statistics.median(e["seconds"] for e in p["history"])
    return {"s": s, "rows_per_s": p["rows"]["train"] / s, "metrics": m["metrics"], "device": p["device"]}
failed = False
print("\n| recipe | CUDA s/epoch | CPU s/epoch | CUDA rows/s | CPU rows/s | speed-up | CUDA test metric | CPU test metric | agree |")
print("|---|---|---|---|---|---|---|---|---|")
for name, metric, tolerance in [("large-regression", "rmse", 0.02), ("large-classification", "accuracy", 0.005),
                                ("diamonds", "rmse", 0.02)]:
    cuda, cpu = load(f"{name}-cuda"), load(f"{name}-cpu")
    a, b = cuda["metrics"][metric], cpu["metrics"][metric]
    agree = abs(a - b) / max(abs(b), 1e-12) <= tolerance if metric == "rmse" else abs(a - b) <= tolerance
    failed |= not agree
    bound = f"within {tolerance:.0%}" if metric == "rmse" else f"within {tolerance * 100:.1f} points"
    print(f"| {name} | {cuda['s']:.3f} | {cpu['s']:.3f} | {cuda['rows_per_s']:,.0f} | {cpu['rows_per_s']:,.0f} "
          f"| {cpu['s'] / cuda['s']:.2f}x | {metric} {a:.5g} | {metric} {b:.5g} | {'yes' if agree else 'NO'} ({bound}) |")
sys.exit(1 if failed else 0)
EOF

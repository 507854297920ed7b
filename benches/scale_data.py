#!/usr/bin/env python3
"""Synthetic tabular data at scale, with a known signal, for `trainer train` at millions of rows.

    python3 -m venv target/scale/venv
    target/scale/venv/bin/pip install -r benches/scale-requirements.txt
    target/scale/venv/bin/python benches/scale_data.py --rows 2000000            # CSV and Parquet
    target/scale/venv/bin/python benches/scale_data.py --rows 100000 --format parquet --out /tmp/d

Writes, under --out (default data/large/, which git ignores):

    regression-<rows>.{csv,parquet}       target column `y` (a price-like number)
    classification-<rows>.{csv,parquet}   target column `label` ("yes" / "no")
    signal-<rows>.json                    the floors: the noise's RMSE, the Bayes accuracy

Both files hold the same 48 feature columns, row for row:

- 40 numeric: x00..x29 standard normal, x30..x34 log-normal (skewed, positive), x35..x39 counts
  (integers 0..200). Missing values: 5 % of x05..x09, 20 % of x10, 1 % of x35.
- 8 categorical (text): c0 with 1,000 values (Zipf-distributed: a long tail of rare values),
  c1 300, c2 120, c3 40, c4 12, c5 6, c6 4, c7 3. Missing values: 2 % of c0..c3.

The signal f is a fixed function of the features (seeded): a linear part over x00..x09, a sine of
x10, a product x11 * x12, a hinge on x13, the log of x30, a per-value effect for every category of
every categorical column, and the count x35 through a square root; a missing numeric value
contributes as a 0 would. Regression: y = 1000 + 250 f + noise, noise ~ N(0, 125), so no model can
beat an RMSE of 125 on average (printed as `noise_rmse`, and measured on the rows drawn as
`sample_noise_rmse`). Classification: P(yes) = sigmoid(1.5 g), g another seeded function of the
same kind; the best any model can do is the Bayes accuracy mean(max(p, 1 - p)), printed as
`bayes_accuracy`.

The same --rows and --seed always give the same files. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
except ImportError as error:  # pragma: no cover - only without the venv
    sys.exit(
        f"benches/scale_data.py needs numpy and pyarrow ({error}):\n"
        "  python3 -m venv target/scale/venv && target/scale/venv/bin/pip install -r benches/scale-requirements.txt\n"
        "and run target/scale/venv/bin/python benches/scale_data.py"
    )

N_NUMERIC = 40
CATEGORIES = [1000, 300, 120, 40, 12, 6, 4, 3]
NOISE_SD = 125.0


def features(rows: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Numeric columns (float64 with NaN for missing) and categorical codes (int32, -1 missing)."""
    numeric: dict[str, np.ndarray] = {}
    for i in range(30):
        numeric[f"x{i:02d}"] = rng.standard_normal(rows)
    for i in range(30, 35):
        numeric[f"x{i:02d}"] = rng.lognormal(mean=0.0, sigma=1.0, size=rows)
    for i in range(35, 40):
        numeric[f"x{i:02d}"] = rng.integers(0, 201, size=rows).astype(np.float64)
    # Four decimals, as measurements usually come (and a CSV of sensible size).
    for name in numeric:
        numeric[name] = np.round(numeric[name], 4)
    for name, share in [(f"x{i:02d}", 0.05) for i in range(5, 10)] + [("x10", 0.20), ("x35", 0.01)]:
        numeric[name][rng.random(rows) < share] = np.nan
    codes: dict[str, np.ndarray] = {}
    for k, n in enumerate(CATEGORIES):
        # Zipf-like frequencies: value v drawn with weight 1 / (v + 1).
        weights = 1.0 / np.arange(1, n + 1)
        weights /= weights.sum()
        column = rng.choice(n, size=rows, p=weights).astype(np.int32)
        if k < 4:
            column[rng.random(rows) < 0.02] = -1
        codes[f"c{k}"] = column
    return numeric, codes


def signal(
    numeric: dict[str, np.ndarray], codes: dict[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """A seeded function of the features, of unit order; missing values count as 0."""

    def x(name: str) -> np.ndarray:
        return np.nan_to_num(numeric[name], nan=0.0)

    weights = rng.normal(0.0, 0.5, size=10)
    f = sum(weights[i] * x(f"x{i:02d}") for i in range(10))
    f = f + 0.6 * np.sin(2.0 * x("x10")) + 0.5 * x("x11") * x("x12") + 0.8 * np.maximum(x("x13"), 0.0)
    f = f + 0.4 * np.log(numeric["x30"]) + 0.05 * np.sqrt(x("x35"))
    for k, n in enumerate(CATEGORIES):
        effects = np.append(rng.normal(0.0, 0.6 if k < 3 else 0.3, size=n), 0.0)  # index -1: missing
        f = f + effects[codes[f"c{k}"]]
    return f


def category_text(k: int, codes: np.ndarray) -> pa.Array:
    names = np.array([f"c{k}_{v}" for v in range(CATEGORIES[k])], dtype=object)
    values = names[np.maximum(codes, 0)]
    return pa.array(values, type=pa.string(), mask=codes < 0)


def write(table: pa.Table, stem: Path, formats: list[str]) -> None:
    if "csv" in formats:
        # Missing values as empty cells, the trainer's (and pandas') default.
        pacsv.write_csv(table, stem.with_suffix(".csv"), pacsv.WriteOptions(quoting_style="none"))
    if "parquet" in formats:
        pq.write_table(table, stem.with_suffix(".parquet"), compression="snappy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows per file (default 2,000,000)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the features, the signal and the noise")
    parser.add_argument("--out", type=Path, default=Path("data/large"), help="output folder (default data/large)")
    parser.add_argument(
        "--format", choices=["csv", "parquet", "both"], default="both", help="file format(s) to write (default both)"
    )
    args = parser.parse_args()
    if args.rows < 100:
        parser.error("--rows must be at least 100")
    formats = ["csv", "parquet"] if args.format == "both" else [args.format]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    rng = np.random.default_rng(args.seed)
    numeric, codes = features(args.rows, rng)
    columns: dict[str, pa.Array] = {name: pa.array(v, mask=np.isnan(v)) for name, v in numeric.items()}
    for k in range(len(CATEGORIES)):
        columns[f"c{k}"] = category_text(k, codes[f"c{k}"])

    f = signal(numeric, codes, np.random.default_rng(args.seed + 1))
    noise = rng.normal(0.0, NOISE_SD, size=args.rows)
    y = np.round(1000.0 + 250.0 * f + noise, 2)
    g = signal(numeric, codes, np.random.default_rng(args.seed + 2))
    p = 1.0 / (1.0 + np.exp(-1.5 * g))
    label = np.where(rng.random(args.rows) < p, "yes", "no")

    features_table = pa.table(columns)
    write(features_table.append_column("y", pa.array(y)), args.out / f"regression-{args.rows}", formats)
    write(
        features_table.append_column("label", pa.array(label, type=pa.string())),
        args.out / f"classification-{args.rows}",
        formats,
    )
    floors = {
        "rows": args.rows,
        "seed": args.seed,
        "numeric_columns": N_NUMERIC,
        "categorical_columns": dict(zip([f"c{k}" for k in range(len(CATEGORIES))], CATEGORIES)),
        "noise_rmse": NOISE_SD,
        "sample_noise_rmse": float(np.sqrt(np.mean(noise**2))),
        "target_sd": float(np.std(y)),
        "bayes_accuracy": float(np.mean(np.maximum(p, 1.0 - p))),
        "share_yes": float(np.mean(label == "yes")),
    }
    (args.out / f"signal-{args.rows}.json").write_text(json.dumps(floors, indent=2) + "\n")
    sizes = ", ".join(
        f"{path.name} {path.stat().st_size / 1e6:.0f} MB"
        for path in sorted(args.out.glob(f"*-{args.rows}.*"))
        if path.suffix in (".csv", ".parquet")
    )
    print(f"wrote {sizes} in {time.monotonic() - started:.1f} s; floors: {json.dumps(floors)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

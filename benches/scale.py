#!/usr/bin/env python3
"""Training at scale on the CPU: how load time, preprocessing, seconds per epoch and peak memory
grow with the rows, for configs/large-regression.toml and configs/large-classification.toml.

    python3 -m venv target/scale/venv
    target/scale/venv/bin/pip install -r benches/scale-requirements.txt
    cargo build --release -p trainer
    target/scale/venv/bin/python benches/scale.py                          # 100k, 500k, 2M rows
    target/scale/venv/bin/python benches/scale.py --sizes 100000 --epochs 1  # a quick look
    target/scale/venv/bin/python benches/scale.py --write-benchmarks

For each size the data is generated once by benches/scale_data.py into data/large/ (kept for the
next run). Then, one run at a time, each `trainer train --device cpu --quiet` on its own:

- each recipe on the Parquet file for --epochs epochs (default 2);
- the regression recipe on the CSV file for one epoch (reading CSV is the slower load).

Every figure comes from the artifact the run wrote (its provenance: `timings`, `peak_rss_bytes`,
`history`) and from the process's resource use (CPU seconds over wall seconds: how many cores it
kept busy). Seconds per epoch is the median over the epochs run. Results go to
target/scale/results.json, Markdown to stdout, and with --write-benchmarks between the
`<!-- scale:begin -->` and `<!-- scale:end -->` lines of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "large"
RESULTS = ROOT / "target" / "scale" / "results.json"
RECIPES = ["regression", "classification"]

sys.path.insert(0, str(ROOT / "benches"))
from run import machine  # noqa: E402  (the harness's description of the machine)


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def ensure_data(rows: int) -> None:
    wanted = [DATA / f"{task}-{rows}.{ext}" for task in RECIPES for ext in ("csv", "parquet")]
    if all(p.exists() for p in wanted):
        return
    subprocess.run(
        [sys.executable, str(ROOT / "benches" / "scale_data.py"), "--rows", str(rows), "--out", str(DATA)],
        check=True,
    )


def train(trainer: Path, task: str, data: Path, epochs: int) -> dict:
    """One `trainer train` run; the artifact's figures and the process's CPU use."""
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        process = subprocess.run(
            [str(trainer), "train", "--config", f"configs/large-{task}.toml", "--data", str(data),
             "--epochs", str(epochs), "--device", "cpu", "--quiet", "--out", out],
            cwd=ROOT, capture_output=True, text=True,
        )
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if process.returncode != 0:
            raise RuntimeError(f"trainer failed on {data.name}:\n{process.stderr[-3000:]}")
        manifest = json.loads(next(Path(out).glob("*/*/manifest.json")).read_text())
    provenance = manifest["provenance"]
    epochs_run = provenance["history"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    train_seconds = provenance["timings"]["train"]
    train_rows = provenance["rows"]["train"]
    s_per_epoch = statistics.median(e["seconds"] for e in epochs_run)
    return {
        "task": task,
        "file": data.name,
        "file_bytes": data.stat().st_size,
        "rows": provenance["rows"]["total"],
        "train_rows": train_rows,
        "network_inputs": manifest["network"]["n_features"],
        "hidden_layers": manifest["network"]["hidden_layers"],
        "feature_bytes": train_rows * manifest["network"]["n_features"] * 4,
        "epochs": len(epochs_run),
        "timings": provenance["timings"],
        "s_per_epoch": s_per_epoch,
        "rows_per_s": train_rows / s_per_epoch,
        "peak_rss_bytes": provenance.get("peak_rss_bytes"),
        "wall_seconds": wall,
        "cores_busy": cpu / wall,
        "metrics": manifest["metrics"],
        "stderr_tail": process.stderr[-2000:],
        "train_seconds": train_seconds,
    }


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def report(results: dict) -> str:
    runs = results["runs"]
    lines = [
        f"Measured {results['date']} on {results['machine']}; "
        f"`{results['command']}`, `trainer train --device cpu`, one run at a time. "
        "Seconds per epoch: the median over the epochs run; cores busy: the process's CPU seconds "
        "over its wall seconds (2 is both cores); peak RSS: the process's high-water mark "
        "(`VmHWM`). In-memory features: the training rows' network inputs as f32, the floor of "
        "what training must hold.",
        "",
    ]
    for task in RECIPES:
        parquet = [r for r in runs if r["task"] == task and r["file"].endswith(".parquet")]
        if not parquet:
            continue
        first = parquet[0]
        metric = "rmse" if task == "regression" else "accuracy"
        lines += [
            f"**configs/large-{task}.toml** (hidden layers {first['hidden_layers']}, "
            f"{first['network_inputs']} network inputs), Parquet:",
            "",
            "| rows | Parquet file | load | preprocess | in-memory features | s/epoch | rows/s | cores busy "
            f"| peak RSS | peak RSS / features | test {metric} |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in parquet:
            rss = r["peak_rss_bytes"] or 0
            lines.append(
                f"| {r['rows']:,} | {mb(r['file_bytes'])} | {r['timings']['load']:.1f} s "
                f"| {r['timings']['preprocess']:.1f} s | {mb(r['feature_bytes'])} | {r['s_per_epoch']:.1f} "
                f"| {r['rows_per_s']:,.0f} | {r['cores_busy']:.2f} | {mb(rss)} "
                f"| {rss / r['feature_bytes']:.1f}x | {r['metrics'][metric]:.4g} |"
            )
        lines.append("")
    csv = [r for r in runs if r["file"].endswith(".csv")]
    if csv:
        lines += [
            "The same regression data as CSV (one epoch):",
            "",
            "| rows | CSV file | load | preprocess | peak RSS |",
            "|---|---|---|---|---|",
        ]
        for r in csv:
            lines.append(
                f"| {r['rows']:,} | {mb(r['file_bytes'])} | {r['timings']['load']:.1f} s "
                f"| {r['timings']['preprocess']:.1f} s | {mb(r['peak_rss_bytes'] or 0)} |"
            )
        lines.append("")
    floors = results.get("floors", {})
    if floors:
        lines.append(
            "The data's floors (benches/scale_data.py): "
            + "; ".join(
                f"{int(rows):,} rows: noise RMSE {f['sample_noise_rmse']:.1f}, Bayes accuracy {f['bayes_accuracy']:.4f}"
                for rows, f in sorted(floors.items(), key=lambda kv: int(kv[0]))
            )
            + ". A run of a few epochs is a measurement of cost, not a fully trained model."
        )
    return "\n".join(lines).rstrip() + "\n"


def write_benchmarks(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    content = path.read_text()
    begin, end = "<!-- scale:begin (written by benches/scale.py) -->", "<!-- scale:end -->"
    if begin not in content or end not in content:
        raise SystemExit(f"BENCHMARKS.md has no {begin} ... {end} block")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}{end}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,500000,2000000", help="row counts, comma-separated")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per Parquet run (default 2)")
    parser.add_argument("--no-csv", action="store_true", help="skip the CSV runs")
    parser.add_argument("--write-benchmarks", action="store_true", help="write the tables into BENCHMARKS.md")
    parser.add_argument("--report-only", action="store_true", help="print (and write) the last results again")
    args = parser.parse_args()

    if args.report_only:
        results = json.loads(RESULTS.read_text())
    else:
        trainer = target_dir() / "release" / "trainer"
        if not trainer.exists():
            raise SystemExit(f"{trainer} is missing: cargo build --release -p trainer")
        sizes = [int(s) for s in args.sizes.split(",")]
        results = {
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "command": "python benches/scale.py " + " ".join(sys.argv[1:]),
            "runs": [],
            "floors": {},
        }
        for rows in sizes:
            ensure_data(rows)
            results["floors"][str(rows)] = json.loads((DATA / f"signal-{rows}.json").read_text())
            for task in RECIPES:
                run = train(trainer, task, DATA / f"{task}-{rows}.parquet", args.epochs)
                print(f"{task} {rows:,} parquet: {run['s_per_epoch']:.1f} s/epoch, load {run['timings']['load']:.1f} s, "
                      f"peak RSS {mb(run['peak_rss_bytes'] or 0)}, cores {run['cores_busy']:.2f}", file=sys.stderr)
                results["runs"].append(run)
            if not args.no_csv:
                run = train(trainer, "regression", DATA / f"regression-{rows}.csv", 1)
                print(f"regression {rows:,} csv: load {run['timings']['load']:.1f} s, "
                      f"peak RSS {mb(run['peak_rss_bytes'] or 0)}", file=sys.stderr)
                results["runs"].append(run)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    print(text)
    if args.write_benchmarks:
        write_benchmarks(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

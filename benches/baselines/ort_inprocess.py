"""In-process peer of the criterion bench `predictor/<model>/<rows>`: onnxruntime (Python, one
intra-op and one inter-op thread, sequential execution) running the exported ``model.onnx`` on
the same rows.

The rows are those benches/predictor.rs feeds the Predictor: the first N rows of the bundled
data file, cycling through it when N is larger, with empty cells and ``NA`` as missing. The
feeds are built once per batch size, the way README.md's ONNX example builds them: one input
per raw column, ``float32 [N, 1]`` for numeric columns (NaN when missing) and object strings
``[N, 1]`` for categorical ones (empty when missing). What is timed is ``session.run`` alone,
all outputs, on feeds already built, so onnxruntime is not charged for turning records into
arrays (the Predictor is: it starts from records).

For each batch size: a warm-up, then repeated samples of a fixed number of back-to-back calls
(about 10 ms each); the figure is the median over the samples of the time per call.

Usage::

    python ort_inprocess.py --model diamonds=REPO/diamonds/VERSION --model penguins=... \
        [--data-dir data] [--seconds 1.0]

Prints one JSON object: ``{"onnxruntime": VERSION, "models": {name: {"1": {"batch_us": ..,
"row_ns": ..}, "64": .., "4096": ..}}}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
BATCH_SIZES = (1, 64, 4096)


def session_for(version_dir: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(version_dir / "model.onnx"), sess_options=options,
                                providers=["CPUExecutionProvider"])


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def feeds_for(session: ort.InferenceSession, rows: list[dict[str, str]], n: int) -> dict[str, np.ndarray]:
    """The first n rows (cycling), one [n, 1] array per model input."""
    picked = [rows[i % len(rows)] for i in range(n)]
    feeds = {}
    for spec in session.get_inputs():
        cells = [row.get(spec.name, "") for row in picked]
        if spec.type == "tensor(float)":
            values = [float("nan") if c in ("", "NA") else float(c) for c in cells]
            feeds[spec.name] = np.array(values, dtype=np.float32).reshape(-1, 1)
        else:
            feeds[spec.name] = np.array(["" if c in ("", "NA") else c for c in cells], dtype=object).reshape(-1, 1)
    return feeds


def time_runs(session: ort.InferenceSession, feeds: dict[str, np.ndarray], seconds: float) -> float:
    """Median seconds per `session.run` call, over samples of back-to-back calls."""
    run = session.run
    # Warm-up (about a tenth of the time), which also sizes a sample at about 10 ms.
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < seconds / 10:
        run(None, feeds)
        calls += 1
    per_call = (time.perf_counter() - started) / calls
    per_sample = max(1, round(0.01 / per_call))
    samples = []
    deadline = time.perf_counter() + seconds
    while len(samples) < 5 or time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(per_sample):
            run(None, feeds)
        samples.append((time.perf_counter() - start) / per_sample)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=VERSION_DIR",
                        help="a model version directory; NAME picks the data file NAME.csv")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per batch size")
    args = parser.parse_args()

    results = {"onnxruntime": ort.__version__, "models": {}}
    for item in args.model:
        name, _, version_dir = item.partition("=")
        session = session_for(Path(version_dir))
        rows = read_rows(args.data_dir / f"{name}.csv")
        per_batch = {}
        for n in BATCH_SIZES:
            seconds = time_runs(session, feeds_for(session, rows, n), args.seconds)
            per_batch[str(n)] = {"batch_us": seconds * 1e6, "row_ns": seconds * 1e9 / n}
        results["models"][name] = per_batch
    print(json.dumps(results))


if __name__ == "__main__":
    main()

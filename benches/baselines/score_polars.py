"""Offline batch scoring with polars + onnxruntime, the fastest route a Python user is likely to
pick for a large CSV: polars' multi-threaded CSV reader on its streaming engine hands the file
over in batches (``scan_csv(...).collect_batches()``, since polars 2.x has no
``read_csv_batched``), and onnxruntime scores each batch with the exported ``model.onnx``.
The streaming engine reads and parses the next batches on its own threads while this one runs
the model, so reading and scoring overlap.

Usage::

    python score_polars.py --model REPO/name/VERSION --input in.csv --output out.csv \
        [--chunksize 100000] [--threads 1]

Writes ``prediction`` (regression) or ``label`` plus ``prob_<class>`` per class
(classification), one row per input row, in input order, like ``score_pandas.py``. Empty
cells and ``NA`` are missing: NaN for numeric columns, the empty string for categorical ones.
Prints the row count to stderr. What the harness measures is this whole process: wall time
from start to exit and its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="a model version directory")
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--chunksize", type=int, default=100_000, help="rows per batch handed to onnxruntime")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args()

    with open(args.model / "manifest.json") as f:
        manifest = json.load(f)
    features = manifest["schema"]["features"]
    is_classification = manifest["schema"]["task"] != "regression"
    labels = manifest.get("labels") or []

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        str(args.model / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
    )
    output_names = ["label", "probabilities"] if is_classification else ["prediction"]

    # Only the model's columns are read (projection pushdown into the reader); numeric ones are
    # parsed straight to float32, categorical ones kept as text so "01" stays "01".
    names = [f["name"] for f in features]
    overrides = {f["name"]: (pl.Float32 if f["kind"] == "numeric" else pl.String) for f in features}
    query = pl.scan_csv(args.input, schema_overrides=overrides, null_values=["NA"]).select(
        pl.col(f["name"]).fill_null(float("nan")) if f["kind"] == "numeric" else pl.col(f["name"]).fill_null("")
        for f in features
    )

    rows, wrote_header = 0, False
    header = ["label", *(f"prob_{c}" for c in labels)] if is_classification else ["prediction"]
    with open(args.output, "wb") as out:
        for chunk in query.collect_batches(chunk_size=args.chunksize):
            feeds = {}
            for feature in features:
                column = chunk.get_column(feature["name"])
                if feature["kind"] == "numeric":
                    values = column.to_numpy()
                else:
                    values = column.to_numpy().astype(object, copy=False)
                feeds[feature["name"]] = values.reshape(-1, 1)

            results = session.run(output_names, feeds)
            if is_classification:
                label, probabilities = results
                scored = pl.DataFrame({"label": label, **{f"prob_{c}": probabilities[:, i] for i, c in enumerate(labels)}})
            else:
                scored = pl.DataFrame({"prediction": np.ravel(results[0])})
            scored.write_csv(out, include_header=not wrote_header)
            wrote_header = True
            rows += chunk.height

        if not wrote_header:
            out.write((",".join(header) + "\n").encode())

    print(f"scored {rows} rows of {', '.join(names)}", file=sys.stderr)


if __name__ == "__main__":
    main()

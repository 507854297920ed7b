"""Baseline offline batch scoring: pandas + onnxruntime, chunk by chunk.

Usage::

    python score_pandas.py --model REPO/name/VERSION --input in.csv --output out.csv [--chunksize 100000]

Writes ``prediction`` (regression) or ``label`` plus ``prob_<class>`` per class
(classification), one row per input row, in input order. Prints the row count to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="a model version directory")
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--chunksize", type=int, default=100_000)
    args = parser.parse_args()

    with open(args.model / "manifest.json") as f:
        manifest = json.load(f)
    features = manifest["schema"]["features"]
    is_classification = manifest["schema"]["task"] != "regression"
    labels = manifest.get("labels") or []

    # Single-threaded, like the compared scorer.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(args.model / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
    )
    output_names = ["label", "probabilities"] if is_classification else ["prediction"]

    # Read only the model's columns; categorical ones as text so "01" stays "01".
    names = [f["name"] for f in features]
    dtypes = {f["name"]: str for f in features if f["kind"] == "categorical"}
    reader = pd.read_csv(args.input, usecols=names, dtype=dtypes, chunksize=args.chunksize)

    rows = 0
    for i, chunk in enumerate(reader):
        feeds = {}
        for feature in features:
            column = chunk[feature["name"]]
            if feature["kind"] == "numeric":
                # Empty cells are NaN, which the model treats as missing.
                values = pd.to_numeric(column).to_numpy(dtype=np.float32, na_value=np.nan)
            else:
                values = column.fillna("").to_numpy(dtype=object)
            feeds[feature["name"]] = values.reshape(-1, 1)

        results = session.run(output_names, feeds)
        if is_classification:
            label, probabilities = results
            out = pd.DataFrame(probabilities, columns=[f"prob_{c}" for c in labels])
            out.insert(0, "label", label)
        else:
            out = pd.DataFrame({"prediction": results[0]})

        # The first chunk creates the file with a header; the rest append.
        out.to_csv(args.output, mode="w" if i == 0 else "a", header=(i == 0), index=False)
        rows += len(chunk)

    if rows == 0:
        # No data rows: still write the header.
        columns = ["label"] + [f"prob_{c}" for c in labels] if is_classification else ["prediction"]
        pd.DataFrame(columns=columns).to_csv(args.output, index=False)

    print(f"scored {rows} rows", file=sys.stderr)


if __name__ == "__main__":
    main()

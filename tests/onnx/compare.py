"""Runs an exported model.onnx in onnxruntime on raw CSV rows and compares it with what
`serving predict` wrote for the same rows.

    python compare.py --model DIR/model.onnx --rows rows.csv --expected scored.csv
                      [--unseen COLUMN=VALUE --unseen-policy error|zero_vector]

Checks, failing with a message naming the row and the column:
- onnx.checker.check_model(full_check=True) passes, and the IR and opset versions are the stated ones;
- regression: `prediction` within 1e-4 relative error of serving's;
- classification: every probability within 1e-5 absolute, and identical labels;
- with --unseen: a row whose COLUMN holds a category never seen in training fails the run
  (policy `error`, as serving rejects the row) or scores like serving's zero-vector encoding
  (policy `zero_vector`, then the rows file must already contain such rows).

Prints one JSON line with what was compared.
"""

import argparse
import csv
import json
import math
import sys

import numpy as np
import onnx
import onnxruntime as ort

IR_VERSION = 8
OPSETS = {"": 17, "ai.onnx.ml": 3}
MISSING = {"", "NA"}


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def feeds_for(session, rows):
    feeds = {}
    missing = 0
    for info in session.get_inputs():
        if info.name not in rows[0]:
            fail(f"input '{info.name}' is not a column of the rows file")
        cells = [row[info.name] for row in rows]
        missing += sum(cell in MISSING for cell in cells)
        if info.type == "tensor(float)":
            values = [math.nan if cell in MISSING else float(cell) for cell in cells]
            feeds[info.name] = np.array(values, dtype=np.float32).reshape(-1, 1)
        elif info.type == "tensor(string)":
            # Text goes in as written: the graph itself reads "" and "NA" as missing.
            values = cells
            feeds[info.name] = np.array(values, dtype=object).reshape(-1, 1)
        else:
            fail(f"input '{info.name}' has unexpected type {info.type}")
    return feeds, missing


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows", required=True)
    parser.add_argument("--expected", required=True)
    parser.add_argument("--unseen")
    parser.add_argument("--unseen-policy", choices=["error", "zero_vector"])
    args = parser.parse_args()

    model = onnx.load(args.model)
    onnx.checker.check_model(model, full_check=True)
    if model.ir_version != IR_VERSION:
        fail(f"IR version {model.ir_version}, expected {IR_VERSION}")
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets != OPSETS:
        fail(f"opsets {opsets}, expected {OPSETS}")

    with open(args.rows, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(args.expected, newline="") as f:
        expected = list(csv.DictReader(f))
    if len(rows) != len(expected) or not rows:
        fail(f"{len(rows)} input rows but {len(expected)} scored rows")
    for i, row in enumerate(expected):
        if row.get("error"):
            fail(f"serving could not score row {i}: {row['error']}")

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the unseen-category probe fails on purpose; keep its log quiet
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    feeds, missing = feeds_for(session, rows)
    outputs = [o.name for o in session.get_outputs()]
    results = dict(zip(outputs, session.run(outputs, feeds)))

    report = {"rows": len(rows), "missing_cells": missing, "outputs": outputs}
    if "prediction" in results:
        got = results["prediction"]
        if got.shape != (len(rows),):
            fail(f"prediction has shape {got.shape}")
        worst = 0.0
        for i, (value, row) in enumerate(zip(got, expected)):
            want = float(row["prediction"])
            error = abs(float(value) - want) / max(abs(want), 1e-12)
            worst = max(worst, error)
            if error > 1e-4:
                fail(f"row {i}: onnxruntime predicts {value}, serving {want} (relative error {error:.2e})")
        report["max_relative_error"] = worst
    else:
        probabilities, labels = results["probabilities"], results["label"]
        classes = json.loads({p.key: p.value for p in model.metadata_props}["classes"])
        if probabilities.shape != (len(rows), len(classes)):
            fail(f"probabilities have shape {probabilities.shape}, expected {(len(rows), len(classes))}")
        worst = 0.0
        for i, row in enumerate(expected):
            if labels[i] != row["label"]:
                fail(f"row {i}: onnxruntime labels it '{labels[i]}', serving '{row['label']}'")
            for j, name in enumerate(classes):
                error = abs(float(probabilities[i, j]) - float(row[f"prob_{name}"]))
                worst = max(worst, error)
                if error > 1e-5:
                    fail(f"row {i}, class '{name}': probability {probabilities[i, j]} vs serving {row[f'prob_{name}']}")
        report["max_absolute_error"] = worst

    if args.unseen:
        column, value = args.unseen.split("=", 1)
        probe = [dict(rows[0], **{column: value})]
        probe_feeds, _ = feeds_for(session, probe)
        try:
            session.run(outputs, probe_feeds)
            outcome = "scored"
        except Exception as error:  # onnxruntime raises its own Fail/RuntimeException types
            outcome = "refused"
            report["unseen_error"] = str(error).splitlines()[0][:200]
        wanted = "refused" if args.unseen_policy == "error" else "scored"
        if outcome != wanted:
            fail(f"a row with unseen {column}='{value}' was {outcome} under policy {args.unseen_policy}")
        report["unseen"] = outcome

    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""Runs deploy/spark/score.py for real, with spark-submit in local mode, and checks it against
`serving predict` run once on the same rows.

    python check.py --serving target/release/serving --diamonds MODELS/diamonds/1 \\
                    --penguins MODELS/penguins/1 --work DIR [--rows 200000] [--master local[2]]

Diamonds (regression): at least --rows rows of data/diamonds.csv repeated, with a unique `row_id`
first and edited cells spread through the file (text in a numeric column, unknown categories, one
with quotes and a comma, a number too large for a float, empty and `NA` cells, which are missing
values and are scored), as CSV, split by Spark into at least 4 partitions (no shuffle). Penguins
(classification): data/penguins.csv repeated, as Parquet with typed columns (numbers as float64
and int64, `NA` as null, one infinite number), repartitioned into 4 by the job.

Checks, failing with a message that names the row and the column:
- the output has the kept columns, the model's prediction columns (float32) and `error`;
- every row_id appears exactly once, and the job used at least 4 partitions, each written;
- each row's predictions have the bits of serving predict's (float32 bit patterns compared row
  by row, joined on row_id; serving's text is read with np.float32, checked to round exactly);
- a row serving predict failed comes back with the same message (less its `line N: `, which in
  the job is a partition's line), and no other row fails;
- the printed summary counts the same rows and failures.
Before all that, the comparison is shown to fail on a dropped partition, duplicated rows, a
prediction one float32 step away, a float64 prediction column and a changed error.

Prints one JSON line with what was compared.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pyspark

ROOT = Path(__file__).resolve().parents[2]
SCORE = ROOT / "deploy" / "spark" / "score.py"
SUMMARY = re.compile(r"scored (\d+) rows: (\d+) ok, (\d+) failed; (\d+) partitions; ([\d.]+) s, (\d+) rows/s")
LINE = re.compile(r"^line (\d+): (.*)$", re.DOTALL)
MIN_PARTITIONS = 4


class CheckFailed(Exception):
    pass


def fail(message: str) -> None:
    raise CheckFailed(message)


def bundled_rows(recipe: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a bundled recipe's data file."""
    config = tomllib.loads((ROOT / "configs" / f"{recipe}.toml").read_text())
    with open(ROOT / config["data"]["path"], newline="") as file:
        rows = list(csv.reader(file))
    return rows[0], rows[1:]


@dataclass
class Input:
    path: Path
    rows: int
    edited: dict[int, str]  # row_id -> what was edited
    expect_failed: set[int]  # row_ids serving must refuse
    unchecked: set[int] = field(default_factory=set)  # row_ids serving may score or refuse


def diamonds_input(work: Path, n_rows: int) -> Input:
    header, rows = bundled_rows("diamonds")
    column = {name: i for i, name in enumerate(header)}
    edits = [
        ("carat", "heavy", True),  # text in a numeric column
        ("cut", "Flawless", True),  # a category never seen in training
        ("cut", 'Very "Good", really', True),  # quotes and a comma: quoted both ways
        ("clarity", "\u00cfF", True),  # not ASCII
        ("depth", "1e400", True),  # parses to infinity: out of range
        ("carat", "", False),  # missing: the training median
        ("color", "NA", False),  # missing: the most frequent category
        ("x", "", False),
        ("table", " 55", None),  # scored or refused, the job must say what serving says
    ]
    # Spread the edits over the file, the first and last rows among them, so every partition
    # is likely to hold some.
    step = (n_rows - 1) / (2 * len(edits) - 1)
    targets = sorted({round(i * step) for i in range(2 * len(edits))})
    edited, expect_failed, unchecked = {}, set(), set()
    path = work / "diamonds.csv"
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["row_id", *header])
        plan = {row_id: edits[i % len(edits)] for i, row_id in enumerate(targets)}
        for row_id in range(n_rows):
            row = rows[row_id % len(rows)]
            if row_id in plan:
                name, value, refused = plan[row_id]
                row = list(row)
                row[column[name]] = value
                edited[row_id] = f"{name}={value!r}"
                if refused:
                    expect_failed.add(row_id)
                elif refused is None:
                    unchecked.add(row_id)
            writer.writerow([row_id, *row])
    return Input(path, n_rows, edited, expect_failed, unchecked)


def penguins_input(work: Path, copies: int) -> tuple[Input, Path]:
    """The rows as CSV (for serving predict) and as typed Parquet (for the job)."""
    header, rows = bundled_rows("penguins")
    island, flipper = header.index("island"), header.index("flipper_length_mm")
    lines, edited, expect_failed = [], {}, set()
    for row_id in range(copies * len(rows)):
        row = list(rows[row_id % len(rows)])
        if row_id % 997 == 5:
            row[island], edited[row_id] = "Atlantis", "island='Atlantis'"
            expect_failed.add(row_id)
        elif row_id % 997 == 500:
            row[flipper], edited[row_id] = "inf", "flipper_length_mm=inf"
            expect_failed.add(row_id)
        lines.append([str(row_id), *row])
    path = work / "penguins.csv"
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["row_id", *header])
        writer.writerows(lines)
    table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(null_values=["NA", ""]))
    if not (pa.types.is_int64(table["row_id"].type) and pa.types.is_floating(table["flipper_length_mm"].type)):
        fail(f"the penguins Parquet input should have typed columns, got {table.schema}")
    parquet = work / "penguins.parquet"
    pq.write_table(table, parquet)
    return Input(path, table.num_rows, edited, expect_failed), parquet


def read_text_csv(path: Path) -> pa.Table:
    """A CSV file with every cell as text, empty cells as empty text."""
    with open(path, newline="") as file:
        header = next(csv.reader(file))
    return pa_csv.read_csv(
        path,
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def serving_predict(serving: Path, model: Path, rows: Path, out: Path, keep: list[str]) -> pa.Table:
    command = [str(serving), "predict", "--model", str(model), "--input", str(rows), "--output", str(out), "--quiet"]
    for name in keep:
        command += ["--keep", name]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, 3):
        fail(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr}")
    return read_text_csv(out)


def spark_submit(args: argparse.Namespace, score_args: list[str], conf: dict[str, str]) -> dict:
    """Runs the job; returns the figures of its summary line."""
    work = args.work
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    command = [str(submit), "--master", args.master, "--driver-memory", "1g"]
    settings = {"spark.ui.enabled": "false", "spark.log.level": "WARN"}
    for key, value in {**settings, **conf}.items():
        command += ["--conf", f"{key}={value}"]
    command += [str(SCORE), "--serving", str(args.serving), *score_args]
    env = dict(
        os.environ,
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOCAL_DIRS=str(work / "spark-local"),
    )
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        fail(f"the Spark job failed (exit {done.returncode}): {' '.join(command)}\n{output[-6000:]}")
    found = SUMMARY.search(done.stdout)
    if found is None:
        fail(f"the Spark job printed no summary line:\n{output[-4000:]}")
    rows, ok, failed, partitions, seconds, rate = found.groups()
    summary = {
        "rows": int(rows),
        "ok": int(ok),
        "failed": int(failed),
        "partitions": int(partitions),
        "seconds": float(seconds),
        "rows_per_second": int(rate),
    }
    return summary


def parse_exact(texts: list[str], where: str) -> np.ndarray:
    """`np.float32(text)` for each text, checked to be the float32 nearest to the text's value.

    np.float32 reads text through a float64 (Python's, correctly rounded), then rounds that to
    float32. The second rounding can differ from rounding the text itself only when the float64
    lies exactly halfway between two float32 values (every such midpoint is a float64, and
    rounding is monotonic); those few are checked against the text's exact value."""
    narrow = np.array([np.float32(text) for text in texts], dtype=np.float32)
    wide = np.array([float(text) for text in texts], dtype=np.float64)
    if not np.array_equal(narrow.view(np.uint32), wide.astype(np.float32).view(np.uint32)):
        fail(f"{where}: np.float32(text) is not the float64 of the text rounded to float32")
    base = narrow.astype(np.float64)
    up = np.nextafter(narrow, np.float32(np.inf)).astype(np.float64)
    down = np.nextafter(narrow, np.float32(-np.inf)).astype(np.float64)
    for i in np.flatnonzero((wide == (base + up) / 2) | (wide == (base + down) / 2)):
        if Fraction(texts[i]) != Fraction(float(wide[i])):
            fail(f"{where}: {texts[i]!r} lies so near a float32 midpoint that float64 rounding hides which side")
    return narrow


@dataclass
class Expected:
    """serving predict's answer, in input order: row_id i is row i."""

    row_ids: np.ndarray
    floats: dict[str, np.ndarray]  # column -> float32, NaN where the row failed
    texts: dict[str, list[str]]  # text prediction columns (label)
    errors: list[str]  # "" where scored, else the problem without its `line N: `
    kept_cut: list[str] | None


def expected_from(direct: pa.Table, rows: Input, float_columns: list[str], text_columns: list[str]) -> Expected:
    row_ids = np.array(direct["row_id"].to_pylist(), dtype=np.int64)
    if direct.num_rows != rows.rows or not np.array_equal(row_ids, np.arange(rows.rows)):
        fail(f"serving predict did not return rows 0..{rows.rows - 1} in order")
    errors = []
    for row_id, error in enumerate(direct["error"].to_pylist()):
        if error:
            located = LINE.match(error)
            if located is None or int(located.group(1)) != row_id + 2:
                fail(f"serving predict's error for row_id {row_id} (line {row_id + 2}) is not located there: {error!r}")
            error = located.group(2)
        errors.append(error)
    failed = {i for i, error in enumerate(errors) if error} - rows.unchecked
    if failed != rows.expect_failed:
        fail(
            f"serving predict failed rows {sorted(failed)}, the edits should fail {sorted(rows.expect_failed)} "
            f"(edits: {rows.edited})"
        )
    floats = {}
    for name in float_columns:
        texts = direct[name].to_pylist()
        values = np.full(rows.rows, np.nan, dtype=np.float32)
        scored = [i for i in range(rows.rows) if not errors[i]]
        values[scored] = parse_exact([texts[i] for i in scored], f"serving predict's {name}")
        floats[name] = values
    texts = {name: direct[name].to_pylist() for name in text_columns}
    kept_cut = direct["cut"].to_pylist() if "cut" in direct.column_names else None
    return Expected(row_ids, floats, texts, errors, kept_cut)


def compare(
    out: pa.Table, expected: Expected, keep: list[str], predictions: list[str], row_id_type: pa.DataType
) -> list[str]:
    """Every way the job's output differs from serving predict's answer (empty when it does not)."""
    problems = []
    float_columns, text_columns = floats_and_texts(predictions)
    names = [*keep, *predictions, "error"]
    if out.column_names != names:
        return [f"output columns {out.column_names}, expected {names}"]
    types = {name: out.schema.field(name).type for name in out.column_names}
    for name in float_columns:
        if types[name] != pa.float32():
            problems.append(f"column {name} is {types[name]}, expected float (32-bit, as serving writes)")
    if types["row_id"] != row_id_type or types["error"] != pa.string():
        problems.append(f"row_id is {types['row_id']} (expected {row_id_type}), error is {types['error']}")
    if problems:
        return problems
    row_ids = np.array([int(v) for v in out["row_id"].to_pylist()], dtype=np.int64)
    n = len(expected.row_ids)
    counts = np.bincount(row_ids[(row_ids >= 0) & (row_ids < n)], minlength=n)
    if len(row_ids) != n or (counts != 1).any() or ((row_ids < 0) | (row_ids >= n)).any():
        missing, twice = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
        return [
            f"{len(row_ids)} rows for {n} row_ids: {len(missing)} missing (first {missing[:5].tolist()}), "
            f"{len(twice)} more than once (first {twice[:5].tolist()})"
        ]
    order = np.argsort(row_ids)
    errors = take(out["error"], order)
    for row_id, (got, want) in enumerate(zip(errors, expected.errors, strict=True)):
        if (got or "") != want or (not want and got is not None):
            problems.append(f"row_id {row_id}: error {got!r}, serving predict says {want!r}")
            if len(problems) >= 5:
                return problems
    for name in float_columns:
        got = out[name].to_numpy(zero_copy_only=False).astype(np.float32)[order]
        want = expected.floats[name]
        scored = ~np.isnan(want)
        if np.isnan(got[scored]).any() or not np.isnan(got[~scored]).all():
            problems.append(f"{name}: nulls where serving predict scored, or values where it failed")
            continue
        differ = np.flatnonzero(got[scored].view(np.uint32) != want[scored].view(np.uint32))
        if len(differ):
            first = np.flatnonzero(scored)[differ[0]]
            problems.append(
                f"{name}: {len(differ)} rows differ in their bits from serving predict's, first row_id "
                f"{first}: {got[first]!r} ({got[first].view(np.uint32):#010x}) against "
                f"{want[first]!r} ({want[first].view(np.uint32):#010x})"
            )
    for name in text_columns:
        got = take(out[name], order)
        want = [text or None for text in expected.texts[name]]
        bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
        if bad:
            problems.append(
                f"{name}: {len(bad)} rows differ, first row_id {bad[0]}: {got[bad[0]]!r} vs {want[bad[0]]!r}"
            )
    if expected.kept_cut is not None and "cut" in keep:
        got = take(out["cut"], order)
        bad = [i for i, (g, w) in enumerate(zip(got, expected.kept_cut, strict=True)) if (g or "") != w]
        if bad:
            problems.append(f"kept cut: {len(bad)} rows differ, first row_id {bad[0]}: {got[bad[0]]!r}")
    return problems


def take(column: pa.ChunkedArray, order: np.ndarray) -> list:
    return column.take(pa.array(order)).to_pylist()


def floats_and_texts(predictions: list[str]) -> tuple[list[str], list[str]]:
    """serving's float columns (`prediction`, `prob_<class>`) and its text one (`label`)."""
    return [c for c in predictions if c != "label"], [c for c in predictions if c == "label"]


def self_check(
    out: pa.Table, expected: Expected, keep: list[str], predictions: list[str], row_id_type: pa.DataType
) -> list[str]:
    """Shows that the comparison notices what would be wrong; returns the cases it noticed."""
    column = floats_and_texts(predictions)[0][0]
    index = out.column_names.index(column)
    values = out[column].to_numpy(zero_copy_only=False).astype(np.float32)
    first_scored = int(np.flatnonzero(~np.isnan(values))[0])
    nudged = values.copy()
    nudged[first_scored] = np.nextafter(nudged[first_scored], np.float32(np.inf))
    errors = out["error"].to_pylist()
    first_failed = next(i for i, e in enumerate(errors) if e)
    changed = list(errors)
    changed[first_failed] = f"line 2: {changed[first_failed]}"
    cases = {
        "a dropped partition": out.slice(0, out.num_rows - out.num_rows // MIN_PARTITIONS),
        "duplicated rows": pa.concat_tables([out, out.slice(0, 10)]),
        "a prediction one float32 step away": out.set_column(index, column, pa.array(nudged, pa.float32())),
        "a float64 prediction column": out.set_column(index, column, out[column].cast(pa.float64())),
        "a changed error": out.set_column(out.column_names.index("error"), "error", pa.array(changed, pa.string())),
    }
    noticed = []
    for case, table in cases.items():
        if not compare(table, expected, keep, predictions, row_id_type):
            fail(f"the comparison would not notice {case}")
        noticed.append(case)
    return noticed


def part_files_with_rows(directory: Path) -> int:
    return sum(1 for part in directory.glob("part-*.parquet") if pq.ParquetFile(part).metadata.num_rows > 0)


@dataclass
class Case:
    name: str
    rows: Input
    job_input: Path  # what the Spark job reads: the same rows, as CSV or Parquet
    model: Path
    keep: list[str]
    row_id_type: pa.DataType  # in the job's output
    options: list[str]  # more score.py options
    conf: dict[str, str]  # more Spark settings
    self_check: bool


def check_case(args: argparse.Namespace, case: Case) -> dict:
    started = time.perf_counter()
    name, rows, keep, row_id_type = case.name, case.rows, case.keep, case.row_id_type
    direct = serving_predict(args.serving, case.model, rows.path, args.work / f"{name}-direct.csv", keep)
    predictions = [c for c in direct.column_names if c not in (*keep, "error")]
    expected = expected_from(direct, rows, *floats_and_texts(predictions))
    out_dir = args.work / f"{name}-scored.parquet"
    job = ["--model", str(case.model), "--input", str(case.job_input), "--output", str(out_dir), "--keep", *keep]
    summary = spark_submit(args, [*job, *case.options], case.conf)
    out = pq.read_table(out_dir)
    problems = compare(out, expected, keep, predictions, row_id_type)
    if problems:
        fail(f"{name}: the Spark output differs from serving predict's:\n  " + "\n  ".join(problems))
    written = part_files_with_rows(out_dir)
    if summary["partitions"] < MIN_PARTITIONS or written < MIN_PARTITIONS:
        fail(
            f"{name}: the job used {summary['partitions']} partitions and wrote {written} files with rows; "
            f"at least {MIN_PARTITIONS} were wanted"
        )
    n_failed = sum(1 for e in expected.errors if e)
    if (summary["rows"], summary["failed"]) != (rows.rows, n_failed):
        fail(f"{name}: the job's summary says {summary}, serving predict scored {rows.rows} rows, {n_failed} failed")
    report = {
        "rows": rows.rows,
        "failed": n_failed,
        "partitions": summary["partitions"],
        "files": written,
        "job_seconds": summary["seconds"],
        "seconds": round(time.perf_counter() - started, 1),
        "edited": len(rows.edited),
        "prediction_columns": predictions,
    }
    if case.self_check:
        report["self_check"] = self_check(out, expected, keep, predictions, row_id_type)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serving", type=Path, required=True)
    parser.add_argument("--diamonds", type=Path, required=True, help="a diamonds model version directory")
    parser.add_argument("--penguins", type=Path, help="a penguins model version directory")
    parser.add_argument("--work", type=Path, required=True, help="an empty directory for inputs and outputs")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    for name in ("serving", "diamonds", "penguins", "work"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        fail(
            "no Java runtime (java is not on PATH and JAVA_HOME is unset): Spark needs one; scripts/test.sh "
            "installs openjdk-17-jre-headless"
        )
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = {}
    diamonds = diamonds_input(args.work, args.rows)
    # Small splits, so that Spark itself cuts the file into partitions at line boundaries.
    split = -(-diamonds.path.stat().st_size // (MIN_PARTITIONS + 2))
    report["diamonds"] = check_case(
        args,
        Case(
            "diamonds",
            diamonds,
            diamonds.path,
            args.diamonds,
            ["row_id", "cut"],
            pa.string(),
            [],
            {"spark.sql.files.maxPartitionBytes": str(split)},
            self_check=True,
        ),
    )
    if args.penguins is not None:
        penguins, parquet = penguins_input(args.work, copies=40)
        report["penguins"] = check_case(
            args,
            Case(
                "penguins",
                penguins,
                parquet,
                args.penguins,
                ["row_id"],
                pa.int64(),
                ["--partitions", str(MIN_PARTITIONS)],
                {},
                self_check=False,
            ),
        )
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as error:
        print(f"FAIL: {error}", file=sys.stderr)
        sys.exit(1)

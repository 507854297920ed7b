"""Score a table on Spark with the `serving` binary on every executor.

    spark-submit deploy/spark/score.py --serving target/release/serving \\
        --model artifacts/diamonds/1 --input rows.csv --output scored.parquet \\
        [--keep row_id ...] [--partitions N]

The binary and the model's version directory travel with the job (`SparkContext.addFile`, the
directory recursively); each executor finds its copies with `SparkFiles.get`. The input is a CSV
file with a header (read as text: every cell reaches `serving` as it is in the file) or Parquet,
by extension. Each partition is scored by ONE child process,

    serving predict --model DIR --input - --format csv --output - --quiet --keep COLUMN ...

fed the partition's rows as CSV on its standard input by a separate thread (so that neither side
waits on a full pipe), while the task reads the scored rows from its standard output as they
come. The output is Parquet: the `--keep` columns (with their input types), the prediction
columns `serving predict` writes for the model (`prediction` for regression; `label` and one
`prob_<class>` per class for classification) and `error` (null when the row was scored).

Why `mapInArrow` rather than `mapInPandas`: the rows only pass through, from Spark's Arrow batches
to CSV text and back, and pyarrow does both conversions in C++ (its CSV writer and streaming
reader) without building pandas objects. The predictions are parsed straight to 32-bit floats by
Arrow's CSV reader, which rounds correctly to float32: `serving` writes the shortest text that
reads back to its float32, so the bits are `serving`'s own. (`np.float32(text)` gives the same
bits for such text, but it goes through a float64, which can round twice for other text.)

Exit status 3 of the child means that some rows could not be scored; each has its message in
`error`, and the job goes on. `serving` locates a message by the line of its input; that line
is the partition's stream, so this job removes the `line N: ` prefix and the kept columns say
which row it was. Any other non-zero status fails the task with the child's standard error. The
task also fails when the child returns a different number of rows than it was given, when a kept
column does not come back as it was sent (rows out of order), or when a row has neither a
prediction nor an error.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from pyspark import SparkFiles
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import FloatType, StringType, StructField, StructType

# Exit status of `serving predict` when some rows could not be scored (serving/src/cli.rs).
EXIT_ROWS_FAILED = 3
# How `serving predict` locates a failed row: `line N: ` before the problem.
LINE_PREFIX = r"^line [0-9]+: "
# The characters of the child's standard error quoted in an exception.
STDERR_QUOTED = 4000


class ScoringError(RuntimeError):
    """A partition could not be scored as `serving predict`'s contract promises."""


@dataclass(frozen=True)
class Model:
    """What the job needs to know of a model version, read from its `manifest.json`."""

    directory: Path
    features: tuple[str, ...]
    # The prediction columns `serving predict` writes, in order, and whether each is a float.
    predictions: tuple[tuple[str, bool], ...]

    @staticmethod
    def read(directory: Path) -> Model:
        manifest_path = directory / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text())
            features = tuple(feature["name"] for feature in manifest["schema"]["features"])
            task = manifest["schema"]["task"]
            labels = manifest.get("labels") or []
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"--model {directory}: cannot read the model's manifest {manifest_path}: {error}"
            ) from error
        # As `Predictions::column_names` (shared-inference/src/postprocess.rs) names them.
        if task == "regression":
            predictions: tuple[tuple[str, bool], ...] = (("prediction", True),)
        elif task in ("binary_classification", "multiclass_classification"):
            predictions = (("label", False),) + tuple((f"prob_{label}", True) for label in labels)
        else:
            raise ValueError(f"--model {directory}: unknown task {task!r} in {manifest_path}")
        return Model(directory, features, predictions)


@dataclass(frozen=True)
class Partition:
    """How every task scores its partition; pickled into the tasks."""

    serving_file: str  # names under the SparkFiles root
    model_file: str
    send: tuple[str, ...]  # the input columns written to the child
    keep: tuple[str, ...]
    predictions: tuple[tuple[str, bool], ...]
    schema: pa.Schema  # of the batches yielded

    def command(self) -> list[str]:
        serving = SparkFiles.get(self.serving_file)
        if not os.access(serving, os.X_OK):
            os.chmod(serving, 0o755)
        command = [serving, "predict", "--model", SparkFiles.get(self.model_file)]
        command += ["--input", "-", "--format", "csv", "--output", "-", "--quiet"]
        for column in self.keep:
            command += ["--keep", column]
        return command

    def header(self) -> list[str]:
        return [*self.keep, *(name for name, _ in self.predictions), "error"]


@dataclass(frozen=True)
class Summary:
    """What a job did: rows written, rows whose `error` is set, partitions, seconds of the write."""

    rows: int
    failed: int
    partitions: int
    seconds: float


def as_text(batch: pa.RecordBatch, columns: Sequence[str]) -> pa.RecordBatch:
    """The columns as `serving` reads them: text as it is, numbers as their shortest round-trip
    text (float32 widened to float64 first, so the text is the float's exact value), null as an
    empty cell (a missing value)."""
    arrays = []
    for name in columns:
        array = batch.column(name)
        if pa.types.is_floating(array.type) and array.type != pa.float64():
            array = array.cast(pa.float64())
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            array = array.cast(pa.string())
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=list(columns))


class Sent:
    """The kept columns of the rows written to the child, in order, until its output claims
    them. Each entry holds the kept values as they came in and as the text that was sent; a column
    of nulls carries the row count when nothing is kept."""

    def __init__(self) -> None:
        self._queue: queue.Queue[pa.Table | None] = queue.Queue()
        self._ready: deque[pa.Table] = deque()
        self.rows = 0

    def put(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        self._queue.put(table)

    def close(self) -> None:
        self._queue.put(None)

    def take(self, n: int) -> pa.Table:
        """The next `n` rows sent; fails when the child returned more rows than it was given."""
        parts = []
        while n > 0:
            if not self._ready:
                table = self._queue.get()
                if table is None:
                    raise ScoringError(
                        f"serving predict returned more rows than the {self.rows} it was given (it answers one "
                        "row per input row)"
                    )
                self._ready.append(table)
            head = self._ready[0]
            if head.num_rows <= n:
                parts.append(self._ready.popleft())
                n -= head.num_rows
            else:
                parts.append(head.slice(0, n))
                self._ready[0] = head.slice(n)
                n = 0
        return pa.concat_tables(parts).combine_chunks()


WRITING = "writing to serving predict"


def feed(
    batches: Iterable[pa.RecordBatch], stdin, job: Partition, sent: Sent, problems: list[tuple[str, BaseException]]
) -> None:
    """Writes the batches to the child as CSV (header first), recording what each kept column
    was; runs on its own thread. A failure is left in `problems`, with what was being done, for
    the task to raise."""
    doing = "reading the partition's rows"
    try:
        writer = None
        for batch in batches:
            doing = "turning the partition's rows into text"
            text = as_text(batch, job.send)
            kept = [batch.column(name) for name in job.keep]
            sent_text = [text.column(name).fill_null("") for name in job.keep]
            sent.put(
                pa.Table.from_arrays(
                    [*kept, *sent_text, pa.nulls(batch.num_rows)],
                    names=[f"kept{i}" for i in range(len(kept))] + [f"text{i}" for i in range(len(kept))] + ["rows"],
                )
            )
            doing = WRITING
            if writer is None:
                writer = pa_csv.CSVWriter(stdin, text.schema)
            writer.write_batch(text)
            doing = "reading the partition's rows"
        doing = WRITING
        if writer is not None:
            writer.close()
    except BaseException as error:  # noqa: BLE001 - raised again by the task
        problems.append((doing, error))
    finally:
        sent.close()
        try:
            stdin.close()
        except OSError as error:
            problems.append((WRITING, error))


def result(scored: pa.RecordBatch, sent: pa.Table, job: Partition) -> pa.RecordBatch:
    """One output batch from the child's rows and the sent rows they answer."""
    n_keep = len(job.keep)
    for i, name in enumerate(job.keep):
        if not pc.all(pc.equal(scored.column(name), sent.column(f"text{i}"))).as_py():
            raise ScoringError(
                f"kept column '{name}' did not come back as it was sent: serving predict's rows are not the "
                "partition's rows in order"
            )
    errors = scored.column("error")
    failed = pc.not_equal(errors, "")
    no_text = pa.scalar(None, pa.string())
    arrays = [sent.column(f"kept{i}").combine_chunks() for i in range(n_keep)]
    for name, is_float in job.predictions:
        column = scored.column(name)
        if is_float:
            if not pc.all(pc.equal(pc.is_valid(column), pc.invert(failed))).as_py():
                raise ScoringError(f"serving predict wrote a row with both or neither of '{name}' and 'error'")
        else:
            column = pc.if_else(failed, no_text, column)
        arrays.append(column)
    arrays.append(pc.if_else(failed, pc.replace_substring_regex(errors, LINE_PREFIX, ""), no_text))
    arrays = [array.cast(field.type) for array, field in zip(arrays, job.schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=job.schema)


def score_partition(batches: Iterator[pa.RecordBatch], job: Partition) -> Iterator[pa.RecordBatch]:
    """Scores one partition with one `serving predict` child (the function `mapInArrow` runs)."""
    first = next(batches, None)
    if first is None:
        return
    sent, problems = Sent(), []
    with tempfile.TemporaryFile() as stderr:
        command = job.command()
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        feeder = threading.Thread(
            target=feed, args=(itertools.chain([first], batches), child.stdin, job, sent, problems), daemon=True
        )
        feeder.start()
        returned, finished = 0, False
        reading: pa.ArrowException | None = None
        try:
            header = job.header()
            types = {name: pa.string() for name in header}
            types.update({name: pa.float32() for name, is_float in job.predictions if is_float})
            reader = pa_csv.open_csv(
                child.stdout,
                read_options=pa_csv.ReadOptions(block_size=1 << 20),
                parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                convert_options=pa_csv.ConvertOptions(
                    column_types=types, null_values=[""], strings_can_be_null=False, quoted_strings_can_be_null=False
                ),
            )
            if reader.schema.names != header:
                raise ScoringError(f"serving predict wrote the columns {reader.schema.names}, expected {header}")
            for scored in reader:
                returned += scored.num_rows
                yield result(scored, sent.take(scored.num_rows), job)
            finished = True
        except pa.ArrowException as error:  # the status and standard error say more, below
            reading = error
        finally:
            if not finished:
                # After an unreadable output give the child a moment to exit by itself, so that its
                # own status and message are reported; otherwise the task failed or was cancelled.
                try:
                    child.wait(timeout=5 if reading is not None else 0)
                except subprocess.TimeoutExpired:
                    child.kill()
            status = child.wait()
            feeder.join()
            stderr.seek(0)
            message = stderr.read().decode(errors="replace")[-STDERR_QUOTED:].strip()
        # The job's own side first; a failed write to a child that stopped is explained by its status.
        for doing, error in problems:
            if doing != WRITING:
                raise ScoringError(f"{doing} failed: {error!r}") from error
        if status not in (0, EXIT_ROWS_FAILED):
            also = f" (and its output could not be read: {reading})" if reading is not None else ""
            raise ScoringError(f"{' '.join(command)} exited with status {status}{also}:\n{message}")
        if reading is not None:
            raise ScoringError(f"reading serving predict's output failed: {reading}\n{message}") from reading
        if problems:
            doing, error = problems[0]
            raise ScoringError(f"{doing} failed: {error!r}\n{message}") from error
        if returned != sent.rows:
            raise ScoringError(
                f"serving predict returned {returned} rows for the partition's {sent.rows}; it answers one row per "
                f"input row\n{message}"
            )


def read_input(spark: SparkSession, path: str) -> DataFrame:
    """CSV (header, every cell as text, RFC 4180 quoting) or Parquet, by extension."""
    lower = path.rstrip("/").lower()
    if lower.endswith(".csv"):
        # FAILFAST: a line Spark cannot read fails the job rather than being padded or dropped.
        reader = spark.read.option("header", True).option("escape", '"').option("mode", "FAILFAST")
        return reader.csv(path)
    if lower.endswith((".parquet", ".pq")):
        return spark.read.parquet(path)
    raise ValueError(f"--input {path}: cannot tell its format; name it .csv or .parquet")


def output_schema(frame: DataFrame, keep: Sequence[str], model: Model) -> StructType:
    fields = [frame.schema[name] for name in keep]
    fields += [StructField(name, FloatType() if is_float else StringType()) for name, is_float in model.predictions]
    return StructType([*fields, StructField("error", StringType())])


def score(
    spark: SparkSession,
    serving: Path,
    model_dir: Path,
    input_path: str,
    output_path: str,
    keep: Sequence[str] = (),
    partitions: int | None = None,
) -> Summary:
    """Scores `input_path` into the Parquet directory `output_path`."""
    if not serving.is_file():
        raise ValueError(f"--serving {serving}: no such file")
    model = Model.read(model_dir)
    frame = read_input(spark, input_path)
    columns = frame.columns
    missing = [name for name in (*model.features, *keep) if name not in columns]
    if missing:
        raise ValueError(
            f"--input {input_path} has no column {missing} (the model reads {list(model.features)}, "
            f"--keep names {list(keep)}); its columns are {columns}"
        )
    clash = [name for name in keep if name in {"error", *(name for name, _ in model.predictions)}]
    if clash:
        raise ValueError(f"--keep {clash}: the output has a column of that name already")
    if len(set(keep)) != len(keep):
        raise ValueError(f"--keep {list(keep)} names a column twice")
    send = tuple(name for name in columns if name in model.features or name in keep)
    frame = frame.select(*send)
    if partitions is not None:
        frame = frame.repartition(partitions)
    schema = output_schema(frame, keep, model)
    spark.sparkContext.addFile(str(serving))
    spark.sparkContext.addFile(str(model_dir), recursive=True)
    job = Partition(serving.name, model_dir.name, send, tuple(keep), model.predictions, to_arrow_schema(schema))
    scored = frame.mapInArrow(functools.partial(score_partition, job=job), schema)
    n_partitions = scored.rdd.getNumPartitions()
    start = time.perf_counter()
    scored.write.parquet(output_path)
    seconds = time.perf_counter() - start
    counts = spark.read.parquet(output_path).agg(F.count(F.lit(1)), F.count("error")).first()
    return Summary(rows=counts[0], failed=counts[1], partitions=n_partitions, seconds=seconds)


def main(argv: Sequence[str] | None = None) -> Summary:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serving", type=Path, required=True, help="the serving binary, built for the executors")
    parser.add_argument("--model", type=Path, required=True, help="the model's version directory (<name>/<version>)")
    parser.add_argument("--input", required=True, help="a CSV file with a header, or Parquet (by extension)")
    parser.add_argument("--output", required=True, help="the Parquet directory to write; must not exist")
    parser.add_argument(
        "--keep", nargs="+", action="extend", default=[], metavar="COLUMN", help="input columns copied to the output"
    )
    parser.add_argument("--partitions", type=int, help="repartition the input into N partitions first")
    args = parser.parse_args(argv)
    if args.partitions is not None and args.partitions < 1:
        parser.error("--partitions must be at least 1")
    spark = SparkSession.builder.appName("serving-score").getOrCreate()
    summary = score(
        spark, args.serving.resolve(), args.model.resolve(), args.input, args.output, args.keep, args.partitions
    )
    rate = summary.rows / summary.seconds if summary.seconds > 0 else float("inf")
    print(
        f"scored {summary.rows} rows: {summary.rows - summary.failed} ok, {summary.failed} failed; "
        f"{summary.partitions} partitions; {summary.seconds:.2f} s, {rate:.0f} rows/s"
    )
    return summary


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

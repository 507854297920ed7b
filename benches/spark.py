"""Rows/s of the Spark job (deploy/spark/score.py, local mode on every core) against `serving
predict` alone on the same rows, on the same machine; best of --repeats runs each.

    .venv/bin/python benches/spark.py [--rows 1000000] [--repeats 3] [--model DIR]

The rows are data/diamonds.csv drawn with replacement (benches/make_rows.py), with an `id`
column, written under target/bench/spark/. The model is --model, else target/bench/models'
diamonds (benches/run.py trains it), else one trained here with the bundled recipe.
`target/release/serving` is built first only if it is missing. Needs the .venv of
`./scripts/python-env.sh tests/spark/requirements.txt` and a Java runtime.

What is timed:
- `serving predict` file to file, and standard input to standard output (as each task runs it);
- spark-submit of the job, whole (JVM and session start included), and the job alone (the
  write of the scored Parquet, as score.py reports it);
- inside one Spark session, what the job is made of: reading the CSV and writing it as Parquet
  with no Python, then the same through an identity `mapInArrow` (Arrow batches to a Python
  worker and back), then the job itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "bench" / "spark"
SCORE = ROOT / "deploy" / "spark" / "score.py"
SUMMARY = re.compile(r"; ([\d.]+) s, (\d+) rows/s")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def best_of(repeats: int, run: Callable[[int], float]) -> float:
    return min(run(i) for i in range(repeats))


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def submit_command(master: str) -> list[str]:
    submit = Path(sys.executable).parent / "spark-submit"
    return [
        str(submit),
        "--master",
        master,
        "--driver-memory",
        "2g",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.log.level=WARN",
    ]


def spark_env() -> dict[str, str]:
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return env


def find_model(given: Path | None) -> Path:
    if given is not None:
        return given.resolve()
    bench_models = ROOT / "target" / "bench" / "models" / "diamonds"
    if bench_models.is_dir():
        return max((p for p in bench_models.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    models = WORK / "models"
    if not (models / "diamonds" / "1").is_dir():
        log("training a diamonds model with the bundled recipe")
        subprocess.run(
            [
                str(ROOT / "target" / "release" / "trainer"),
                "train",
                "--config",
                "configs/diamonds.toml",
                "--out",
                str(models),
                "--device",
                "cpu",
                "--quiet",
            ],
            check=True,
            cwd=ROOT,
        )
    return models / "diamonds" / "1"


def outside(args: argparse.Namespace) -> None:
    serving = ROOT / "target" / "release" / "serving"
    if not serving.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "serving"], check=True, cwd=ROOT)
    WORK.mkdir(parents=True, exist_ok=True)
    model = find_model(args.model)
    rows = WORK / f"diamonds-{args.rows}.csv"
    if not rows.exists():
        subprocess.run(
            [sys.executable, str(ROOT / "benches" / "make_rows.py"), "--rows", str(args.rows), "--output", str(rows)],
            check=True,
        )
    n, master, results = args.rows, f"local[{os.cpu_count()}]", []

    def add(what: str, command: str, seconds: float) -> None:
        results.append({"what": what, "command": command, "seconds": round(seconds, 2), "rows_per_second": n / seconds})
        log(f"{what}: {seconds:.2f} s, {n / seconds:,.0f} rows/s")

    predict = [str(serving), "predict", "--model", str(model), "--keep", "id", "--quiet"]
    out_csv = WORK / "scored.csv"
    add(
        "serving predict, file to file",
        f"serving predict --model M --input {rows.name} --output scored.csv --keep id",
        best_of(args.repeats, lambda _: timed([*predict, "--input", str(rows), "--output", str(out_csv)])),
    )

    def piped(_: int) -> float:
        with rows.open("rb") as stdin:
            return timed(
                [*predict, "--input", "-", "--format", "csv", "--output", "-"], stdin=stdin, stdout=subprocess.DEVNULL
            )

    add(
        "serving predict, stdin to stdout",
        f"serving predict --model M --input - --format csv --output - --keep id < {rows.name} > /dev/null",
        best_of(args.repeats, piped),
    )

    walls, jobs = [], []
    for i in range(args.repeats):
        out = WORK / f"scored-{i}.parquet"
        shutil.rmtree(out, ignore_errors=True)
        command = [
            *submit_command(master),
            str(SCORE),
            "--serving",
            str(serving),
            "--model",
            str(model),
            "--input",
            str(rows),
            "--output",
            str(out),
            "--keep",
            "id",
        ]
        start = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True, env=spark_env(), cwd=WORK)
        walls.append(time.perf_counter() - start)
        found = SUMMARY.search(done.stdout)
        if found is None:
            sys.exit(f"score.py printed no summary:\n{done.stdout}\n{done.stderr[-3000:]}")
        jobs.append(float(found.group(1)))
        shutil.rmtree(out, ignore_errors=True)
    submit = (
        f"spark-submit --master {master} --driver-memory 2g deploy/spark/score.py --serving serving "
        f"--model M --input {rows.name} --output scored.parquet --keep id"
    )
    add("spark-submit score.py, whole", submit, min(walls))
    add("the job alone (score.py's figure)", "(the same runs)", min(jobs))

    inside_command = [
        *submit_command(master),
        str(Path(__file__).resolve()),
        "--inside",
        "--rows",
        str(n),
        "--repeats",
        str(args.repeats),
        "--model",
        str(model),
        "--serving",
        str(serving),
    ]
    done = subprocess.run(inside_command, check=True, capture_output=True, text=True, env=spark_env(), cwd=WORK)
    for stage in json.loads(done.stdout.strip().splitlines()[-1]):
        add(stage["what"], stage["command"], stage["seconds"])

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"\n{n:,} rows of diamonds, best of {args.repeats}; {os.cpu_count()} cores ({cpu}), Spark {master}\n")
    print("| what | command | s | rows/s |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['what']} | `{r['command']}` | {r['seconds']:.2f} | {r['rows_per_second']:,.0f} |")


def inside(args: argparse.Namespace) -> None:
    """The stages of the job, in one Spark session (run under spark-submit by `outside`)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("bench-spark").getOrCreate()
    spark.sparkContext.addPyFile(str(SCORE))
    sys.path.insert(0, str(SCORE.parent))
    import score  # noqa: E402 - shipped with addPyFile above

    rows = str(WORK / f"diamonds-{args.rows}.csv")
    model = score.Model.read(args.model)
    send = ["id", *model.features]
    stages = []
    # A first job pays for class loading and JIT compilation; keep it out of the figures.
    score.read_input(spark, rows).select(*send).write.format("noop").mode("overwrite").save()

    def stage(what: str, command: str, run: Callable[[str], float | None]) -> None:
        """Times `run`'s write; `run` may return the seconds its write took itself."""

        def once(i: int) -> float:
            out = str(WORK / f"stage-{i}.parquet")
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            reported = run(out)
            seconds = reported if reported is not None else time.perf_counter() - start
            shutil.rmtree(out, ignore_errors=True)
            return seconds

        stages.append({"what": what, "command": command, "seconds": best_of(args.repeats, once)})

    stage(
        "Spark: read the CSV, write Parquet (no Python)",
        "spark.read.csv(...).select(id, features).write.parquet",
        lambda out: score.read_input(spark, rows).select(*send).write.parquet(out),
    )

    def identity(out: str) -> None:
        frame = score.read_input(spark, rows).select(*send)
        frame.mapInArrow(lambda batches: batches, frame.schema).write.parquet(out)

    stage(
        "Spark: the same through an identity mapInArrow", "....mapInArrow(lambda batches: batches, schema)...", identity
    )
    stage(
        "Spark: the job (score.score, in the same session)",
        "score.score(spark, ...)",
        lambda out: score.score(spark, args.serving, args.model, rows, out, ["id"]).seconds,
    )
    print(json.dumps(stages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path, help="a diamonds model version directory")
    parser.add_argument("--serving", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    (inside if args.inside else outside)(args)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Peak memory and speed of `serving predict` on Parquet files of growing size.

Builds diamonds rows repeated to each size (pyarrow, row groups of 1,048,576 rows as Spark and
pyarrow write them), scores each file to Parquet and to CSV with the release binary, and reads
each process's peak resident memory with GNU time (`/usr/bin/time -f %M`, Debian's `time`
package: a process forked from this one would count this one's memory too). For scale, the peak
of just loading the same file whole with pyarrow (`pq.read_table`) is printed beside it.

    .venv/bin/python benches/parquet_memory.py --model artifacts/diamonds/1

Needs pyarrow (tests/spark/requirements.txt) and `cargo build --release -p serving`.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mib(command):
    """Runs `command`; returns (seconds, peak RSS in MiB, exit status)."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M"] + command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    return seconds, int(done.stderr.strip().splitlines()[-1]) / 1024, done.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a diamonds version directory")
    parser.add_argument("--serving", default=str(ROOT / "target/release/serving"))
    parser.add_argument("--rows", default="100000,1000000,4000000", help="comma-separated sizes")
    args = parser.parse_args()

    base = pacsv.read_csv(ROOT / "data/diamonds.csv")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"| rows | file MiB | serving -> Parquet: s, rows/s, peak MiB | serving -> CSV: s, peak MiB | pyarrow read_table peak MiB |")
        print("|---:|---:|---|---|---:|")
        for rows in (int(r) for r in args.rows.split(",")):
            repeats = -(-rows // base.num_rows)
            table = pa.concat_tables([base] * repeats).slice(0, rows)
            table = table.append_column("row_id", pa.array(range(rows), pa.int64()))
            path = tmp / f"in-{rows}.parquet"
            pq.write_table(table, path, row_group_size=1 << 20)
            del table
            size = path.stat().st_size / 2**20
            common = [args.serving, "predict", "--model", args.model, "--input", str(path), "--keep", "row_id", "--quiet"]
            pq_s, pq_rss, code = peak_rss_mib(common + ["--output", str(tmp / "out.parquet")])
            assert code == 0, f"serving predict exited {code}"
            csv_s, csv_rss, code = peak_rss_mib(common + ["--output", str(tmp / "out.csv")])
            assert code == 0, f"serving predict exited {code}"
            load = [sys.executable, "-c", f"import pyarrow.parquet as pq; pq.read_table({str(path)!r})"]
            _, load_rss, _ = peak_rss_mib(load)
            print(
                f"| {rows:,} | {size:.1f} | {pq_s:.2f} s, {rows / pq_s:,.0f}, {pq_rss:.1f} | {csv_s:.2f} s, {csv_rss:.1f} "
                f"| {load_rss:.1f} |"
            )
            for f in (path, tmp / "out.parquet", tmp / "out.csv"):
                f.unlink(missing_ok=True)


if __name__ == "__main__":
    main()

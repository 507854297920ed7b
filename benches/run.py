#!/usr/bin/env python3
"""Runs every benchmark of BENCHMARKS.md side by side with its baseline, on this machine, and
writes the results as markdown tables into BENCHMARKS.md (between the `results` markers) and as
JSON into target/bench/results.json.

    python3 benches/run.py            # everything (about 20 minutes on 2 cores)
    python3 benches/run.py --quick    # shorter runs, for checking the harness itself
    python3 benches/run.py --only http,startup

Sections: startup, http, criterion, offline, training. The baseline is what deployment
tutorials teach: FastAPI + uvicorn + onnxruntime serving the exported model.onnx
(benches/baselines/server.py), pandas + onnxruntime for files (score_pandas.py), and
scikit-learn's MLPRegressor for training (train_sklearn.py). Every figure is the median of
several runs; HTTP load comes from wrk, on 127.0.0.1 only, bounded in time.

Pinning: on a 2-core machine the load generator and the server would fight for the same cores,
so each server (ours and the baseline alike) runs on core 1 and wrk on core 0; with one
connection (a strict request-response ping-pong) wrk runs on core 1 too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "target" / "bench"
MODELS = ("diamonds", "penguins")
MARK_BEGIN = "<!-- results:begin (written by benches/run.py) -->"
MARK_END = "<!-- results:end -->"
SERVER_CORE = "1"
LOAD_CORE = "0"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    log(" ".join(str(c) for c in cmd))
    return subprocess.run(cmd, check=True, **kwargs)


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def venv_python() -> Path:
    return ROOT / ".venv" / "bin" / "python"


def pinned(core: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", core, *cmd] if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1 else cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latest_version(model_dir: Path) -> Path:
    versions = [p for p in model_dir.iterdir() if p.name.isdigit()]
    return max(versions, key=lambda p: int(p.name))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and its children (uvicorn's reloader-free server is one process, but be safe)."""
    total = rss_kib(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            total += tree_rss_kib(int(child))
    return total


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------------------------
# Preparation


def prepare(args) -> dict:
    if not shutil.which("wrk"):
        log("installing wrk (Debian package)")
        run(["apt-get", "install", "-y", "-qq", "wrk"], stdout=subprocess.DEVNULL)
    run([str(ROOT / "scripts" / "python-env.sh"), str(ROOT / "benches" / "baselines" / "requirements.txt")])
    if not args.skip_build:
        run(["cargo", "build", "--release", "-p", "serving"], cwd=ROOT)
        run(["cargo", "build", "--release", "-p", "trainer"], cwd=ROOT)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    repository = BENCH_DIR / "models"
    training = {}
    for name in MODELS:
        if (repository / name).exists() and not args.retrain:
            continue
        shutil.rmtree(repository / name, ignore_errors=True)
        out = run(
            [str(target_dir() / "release" / "trainer"), "train", "--config", f"configs/{name}.toml",
             "--out", str(repository), "--device", "cpu"],
            cwd=ROOT, capture_output=True, text=True,
        )
        training[name] = out.stdout
    return {"repository": repository}


# ---------------------------------------------------------------------------------------------
# Servers


class Server:
    """A server process on 127.0.0.1, pinned to the server core, stopped on exit."""

    def __init__(self, kind: str, repository: Path):
        self.kind = kind
        self.port = free_port()
        if kind == "serving":
            cmd = [str(target_dir() / "release" / "serving"), "serve", "--model-repository", str(repository),
                   "--addr", f"127.0.0.1:{self.port}", "--max-concurrency", "256"]
            env = dict(os.environ, RUST_LOG="warn")
        else:
            cmd = [str(venv_python()), str(ROOT / "benches" / "baselines" / "server.py"),
                   "--model-repository", str(repository), "--port", str(self.port)]
            env = dict(os.environ, OMP_NUM_THREADS="1")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(pinned(SERVER_CORE, cmd), env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        self.ready_seconds = self._wait_ready()

    def _wait_ready(self, limit: float = 60.0) -> float:
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited early: {self.process.stderr.read().decode(errors='replace')}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/v2/health/ready")
                if conn.getresponse().status == 200:
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.001)
        raise RuntimeError(f"{self.kind} not ready after {limit} s")

    def rss_mib(self) -> float:
        return tree_rss_kib(self.process.pid) / 1024

    def post(self, path: str, body: bytes) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.kind} {path}: {response.status} {data[:300]!r}")
        return data

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------------
# Requests


def data_rows(name: str) -> list[dict]:
    import csv

    with open(ROOT / "data" / f"{name}.csv", newline="") as f:
        return list(csv.DictReader(f))


def record(row: dict, manifest: dict) -> dict:
    out = {}
    for spec in manifest["schema"]["features"]:
        value = row.get(spec["name"], "")
        if value in ("", "NA"):
            out[spec["name"]] = None
        elif spec["kind"] == "numeric":
            out[spec["name"]] = float(value)
        else:
            out[spec["name"]] = value
    return out


def complete_rows(rows: list[dict], manifest: dict) -> list[dict]:
    """Rows with every feature present: a typical request, and one both servers accept."""
    names = [s["name"] for s in manifest["schema"]["features"]]
    return [r for r in rows if all(r.get(n, "") not in ("", "NA") for n in names)]


def v1_body(records: list[dict]) -> bytes:
    return json.dumps({"instances": records}).encode()


def v2_body(records: list[dict], manifest: dict) -> bytes:
    inputs = []
    for spec in manifest["schema"]["features"]:
        numeric = spec["kind"] == "numeric"
        inputs.append({
            "name": spec["name"],
            "datatype": "FP64" if numeric else "BYTES",
            "shape": [len(records)],
            "data": [r[spec["name"]] for r in records],
        })
    return json.dumps({"inputs": inputs}).encode()


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY_FILE"), "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(port: int, path: str, body: bytes, connections: int, seconds: float, core: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT)
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        cmd = pinned(core, ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                                 "-s", str(script), f"http://127.0.0.1:{port}{path}"])
        out = subprocess.run(cmd, env=dict(os.environ, BENCH_BODY_FILE=str(body_file)), capture_output=True,
                             text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH_JSON "))
    result = json.loads(line[len("BENCH_JSON "):])
    errors = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    result["errors"] = errors
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def load_series(servers: dict, path: str, body: bytes, connections: int, seconds: float, runs: int,
                core: str) -> dict:
    """`runs` load runs against each server, alternating between them run by run, so that a slow
    spell of this shared machine falls on both sides of a ratio rather than on one."""
    for server in servers.values():
        wrk(server.port, path, body, connections, min(1.0, seconds), core)  # warm-up
    results = {kind: [] for kind in servers}
    for _ in range(runs):
        for kind, server in servers.items():
            results[kind].append(wrk(server.port, path, body, connections, seconds, core))
    series = {}
    for kind, runs_of_kind in results.items():
        errors = sum(r["errors"] for r in runs_of_kind)
        if errors:
            raise RuntimeError(f"{kind} {path} c={connections}: {errors} failed requests")
        series[kind] = {
            "rps": median([r["rps"] for r in runs_of_kind]),
            "p50_ms": median([r["p50_us"] for r in runs_of_kind]) / 1000,
            "p99_ms": median([r["p99_us"] for r in runs_of_kind]) / 1000,
            "runs": runs_of_kind,
        }
    return series


# ---------------------------------------------------------------------------------------------
# Sections


def bench_startup(ctx, args) -> dict:
    repository = ctx["repository"]
    results = {}
    for kind in ("serving", "baseline"):
        ready, idle = [], []
        for _ in range(args.runs_startup):
            with Server(kind, repository) as server:
                ready.append(server.ready_seconds)
                time.sleep(1.0)
                idle.append(server.rss_mib())
        results[kind] = {"ready_ms": median(ready) * 1000, "idle_rss_mib": median(idle)}
    stripped = BENCH_DIR / "serving-stripped"
    shutil.copy(target_dir() / "release" / "serving", stripped)
    subprocess.run(["strip", str(stripped)], check=True)
    results["serving"]["binary_mib"] = stripped.stat().st_size / 2**20
    site = subprocess.run([str(venv_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    results["baseline"]["site_packages_mib"] = sum(
        p.stat().st_size for p in Path(site).rglob("*") if p.is_file()) / 2**20
    return results


def bench_http(ctx, args) -> dict:
    repository = ctx["repository"]
    results = {}
    for name in MODELS:
        manifest = json.loads((latest_version(repository / name) / "manifest.json").read_text())
        rows = complete_rows(data_rows(name), manifest)
        one = [record(rows[0], manifest)]
        many = [record(r, manifest) for r in rows[:64]]
        v1_path, v2_path = f"/v1/models/{name}:predict", f"/v2/models/{name}/infer"
        # (protocol, rows per request, connections, wrk's core, path, body). One connection is a
        # strict ping-pong, so wrk shares the server's core (they never run at once); across
        # cores this VM adds a ~60 µs wake-up per round trip, measured once for reference.
        cases = []
        for connections in (1, 8, 64):
            core = SERVER_CORE if connections == 1 else LOAD_CORE
            cases.append(("v1", 1, connections, core, v1_path, v1_body(one)))
            cases.append(("v2", 1, connections, core, v2_path, v2_body(one, manifest)))
        cases.append(("v1", 1, 1, LOAD_CORE, v1_path, v1_body(one)))
        cases.append(("v1", 64, 8, LOAD_CORE, v1_path, v1_body(many)))
        cases.append(("v2", 64, 8, LOAD_CORE, v2_path, v2_body(many, manifest)))
        # Both servers run at once (pinned to the same core, the idle one asleep) so that each
        # case alternates between them.
        with Server("serving", repository) as serving, Server("baseline", repository) as baseline:
            servers = {"serving": serving, "baseline": baseline}
            for protocol, n_rows, connections, core, path, body in cases:
                for server in servers.values():
                    server.post(path, body)  # the request is valid before it is measured
                cross = connections == 1 and core != SERVER_CORE
                key = f"{name}/{protocol}/rows{n_rows}/c{connections}{'-cross-core' if cross else ''}"
                log(f"http {key}")
                for kind, series in load_series(servers, path, body, connections, args.seconds, args.runs,
                                                core).items():
                    series["rows_per_s"] = series["rps"] * n_rows
                    results.setdefault(key, {})[kind] = series
    return results


def bench_criterion(ctx, args) -> dict:
    """The criterion benches, run `args.runs` times; each figure is the median over the runs of
    criterion's own median, and each ratio to the floor is taken within a run (the floor measured
    in that same run) before the median is taken."""
    env = dict(os.environ, BENCH_MODEL_REPOSITORY=str(ctx["repository"]))
    criterion_dir = target_dir() / "criterion"
    timing = ["--warm-up-time", "1", "--measurement-time", "2" if args.quick else "5"]
    runs = []
    for index in range(args.runs):
        log(f"criterion run {index + 1} of {args.runs}")
        shutil.rmtree(criterion_dir, ignore_errors=True)
        run(["cargo", "bench", "-p", "benchmarks", "--bench", "predictor", "--", *timing], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL)
        estimates = {}
        for bench_file in criterion_dir.rglob("new/benchmark.json"):
            meta = json.loads(bench_file.read_text())
            est = json.loads((bench_file.parent / "estimates.json").read_text())
            estimates[meta["full_id"]] = est["median"]["point_estimate"]
        runs.append(estimates)
    sgemm_id = next(k for k in runs[0] if k.startswith("floor/sgemm/"))
    n = int(sgemm_id.rsplit("/", 1)[1])
    madds_per_ns = [n**3 / r[sgemm_id] for r in runs]
    results = {"sgemm_gflops": 2 * median(madds_per_ns), "runs": args.runs, "models": {}}
    for name in MODELS:
        network = json.loads((latest_version(ctx["repository"] / name) / "manifest.json").read_text())["network"]
        dims = [network["n_features"], *network["hidden_layers"], network["n_outputs"]]
        madds = sum(a * b for a, b in zip(dims, dims[1:]))
        per_batch = {}
        for rows in (1, 64, 4096):
            ns = median([r[f"predictor/{name}/{rows}"] for r in runs])
            per_batch[str(rows)] = {"batch_us": ns / 1000, "row_ns": ns / rows}
        forward_ns = [r[f"forward/{name}/4096"] for r in runs if f"forward/{name}/4096" in r]
        ratios = [r[f"predictor/{name}/4096"] / 4096 / (madds / rate) for r, rate in zip(runs, madds_per_ns)]
        results["models"][name] = {
            "forward_4096_row_ns": median(forward_ns) / 4096 if forward_ns else None,
            "multiply_adds_per_row": madds,
            "floor_row_ns": madds / median(madds_per_ns),
            "batches": per_batch,
            "ratio_4096_to_floor": median(ratios),
            "ratio_4096_to_floor_runs": ratios,
        }
    return results


def measure_command(cmd: list[str], env=None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command."""
    started = time.perf_counter()
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{cmd[0]} exited {code}: {stderr[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def bench_offline(ctx, args) -> dict:
    model = latest_version(ctx["repository"] / "diamonds")
    sizes = [100_000, 400_000] if args.quick else [1_000_000, 4_000_000]
    files = {}
    for rows in sizes:
        path = BENCH_DIR / f"diamonds-{rows}.csv"
        if not path.exists():
            run([sys.executable, str(ROOT / "benches" / "make_rows.py"), "--rows", str(rows), "--output", str(path)])
        files[rows] = path
    out = BENCH_DIR / "scored.csv"
    results = {"serving": {}, "baseline": {}}
    serving = [str(target_dir() / "release" / "serving"), "predict", "--model", str(model)]
    for rows, path in files.items():
        runs = [measure_command([*serving, "--input", str(path), "--output", str(out)])
                for _ in range(args.runs if rows == sizes[0] else 1)]
        seconds = median([r[0] for r in runs])
        results["serving"][str(rows)] = {"seconds": seconds, "peak_rss_mib": max(r[1] for r in runs),
                                         "rows_per_s": rows / seconds}
    rows = sizes[0]
    seconds, rss = measure_command([str(venv_python()), str(ROOT / "benches" / "baselines" / "score_pandas.py"),
                                    "--model", str(model), "--input", str(files[rows]), "--output", str(out)],
                                   env=dict(os.environ, OMP_NUM_THREADS="2"))
    results["baseline"][str(rows)] = {"seconds": seconds, "peak_rss_mib": rss, "rows_per_s": rows / seconds}
    out.unlink(missing_ok=True)
    return results


def bench_training(ctx, args) -> dict:
    epochs = 3 if args.quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        out = run([str(target_dir() / "release" / "trainer"), "train", "--config", "configs/diamonds.toml",
                   "--out", tmp, "--device", "cpu", "--epochs", str(epochs), "--name", "bench"],
                  cwd=ROOT, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("trained "))
    # "... on <device>: N epochs in Xs (Ys/epoch), best epoch K"
    ours = float(line.split("(")[-1].split("s/epoch")[0])
    config = tomllib.loads((ROOT / "configs" / "diamonds.toml").read_text())
    sk = subprocess.run([str(venv_python()), str(ROOT / "benches" / "baselines" / "train_sklearn.py"),
                         "--data", str(ROOT / "data" / "diamonds.csv"), "--target", "price",
                         "--hidden", ",".join(map(str, config["model"]["hidden_layers"])),
                         "--batch-size", str(config["training"]["batch_size"]),
                         "--epochs", str(epochs), "--threads", str(os.cpu_count() or 1)],
                        capture_output=True, text=True, check=True).stdout
    baseline = json.loads(sk.strip().splitlines()[-1])
    return {"epochs": epochs, "serving_trainer_s_per_epoch": ours, "sklearn": baseline}


# ---------------------------------------------------------------------------------------------
# Report


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return f"{os.cpu_count()} vCPU ({cpu}), {int(mem) / 2**20:.0f} GiB RAM, {platform.system()} {platform.release()}"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(results: dict, args) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
             f"`python3 benches/run.py{' --quick' if args.quick else ''}`. Servers pinned to core {SERVER_CORE}, "
             f"wrk (1 thread) to core {LOAD_CORE} (to core {SERVER_CORE} with one connection); each figure the "
             f"median of {args.runs} runs of {args.seconds:g} s, alternating run by run between our server and the "
             f"baseline.", ""]
    if "http" in results:
        lines += ["### HTTP, one record per request (budget: throughput ≥ 10x, p99 ≤ 1/5 of the baseline)", "",
                  "| model | protocol | conns | serving req/s | baseline req/s | ratio | serving p99 ms | baseline p99 ms | p99 ratio | budget |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        batch_lines, cross_lines = [], []
        for key, value in results["http"].items():
            name, protocol, rows, conns = key.split("/")
            s, b = value["serving"], value["baseline"]
            ratio = s["rps"] / b["rps"]
            p99_ratio = s["p99_ms"] / b["p99_ms"] if b["p99_ms"] else float("nan")
            if rows == "rows1" and conns.endswith("-cross-core"):
                cross_lines.append(f"| {name} | {protocol} | {conns[1:]} | {s['rps']:,.0f} | {b['rps']:,.0f} | {ratio:.1f}x | "
                                   f"{s['p99_ms']:.2f} | {b['p99_ms']:.2f} | {p99_ratio:.2f} | (reference) |")
            elif rows == "rows1":
                ok = ratio >= 10 and p99_ratio <= 0.2
                lines.append(f"| {name} | {protocol} | {conns[1:]} | {s['rps']:,.0f} | {b['rps']:,.0f} | {ratio:.1f}x | "
                             f"{s['p99_ms']:.2f} | {b['p99_ms']:.2f} | {p99_ratio:.2f} | {verdict(ok)} |")
            else:
                ok = s["rows_per_s"] / b["rows_per_s"] >= 10
                batch_lines.append(f"| {name} | {protocol} | {conns[1:]} | {s['rows_per_s']:,.0f} | {b['rows_per_s']:,.0f} | "
                                   f"{s['rows_per_s'] / b['rows_per_s']:.1f}x | {verdict(ok)} |")
        lines += cross_lines
        lines += ["", "### HTTP, 64 records per request (budget: rows/s ≥ 10x the baseline)", "",
                  "| model | protocol | conns | serving rows/s | baseline rows/s | ratio | budget |",
                  "|---|---|---|---|---|---|---|", *batch_lines]
    if "criterion" in results:
        c = results["criterion"]
        lines += ["", f"### In-process Predictor (criterion; budget: batch 4096 within 3x of the floor)", "",
                  f"Measured single-precision matrix-multiply rate (matrixmultiply sgemm, 256³): "
                  f"{c['sgemm_gflops']:.1f} GFLOP/s. Median of {c.get('runs', 1)} criterion runs; each ratio is "
                  f"taken within one run, against the floor measured in that run (the ratios of every run "
                  f"are listed).", "",
                  "| model | multiply-adds/row | floor ns/row | 1 row µs | 64 rows µs | 4096 rows µs | ns/row at 4096 | ratio to floor | ratio in each run | forward pass alone, ns/row | budget |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, m in c["models"].items():
            b = m["batches"]
            each = ", ".join(f"{r:.2f}x" for r in m.get("ratio_4096_to_floor_runs", []))
            lines.append(f"| {name} | {m['multiply_adds_per_row']:,} | {m['floor_row_ns']:.1f} | {b['1']['batch_us']:.2f} | "
                         f"{b['64']['batch_us']:.1f} | {b['4096']['batch_us']:.0f} | {b['4096']['row_ns']:.1f} | "
                         f"{m['ratio_4096_to_floor']:.2f}x | {each} | {m['forward_4096_row_ns'] or float('nan'):.1f} | "
                         f"{verdict(m['ratio_4096_to_floor'] <= 3)} |")
    if "offline" in results:
        o = results["offline"]
        sizes = sorted(o["serving"], key=int)
        small = sizes[0]
        s, b = o["serving"][small], o["baseline"][small]
        speed = s["rows_per_s"] / b["rows_per_s"]
        flat = max(o["serving"][n]["peak_rss_mib"] for n in sizes)
        lines += ["", "### Offline scoring of diamonds rows (budget: ≥ 500k rows/s, ≥ 5x pandas, RSS < 100 MB flat)", "",
                  "| rows | serving s | serving rows/s | serving peak RSS MiB | pandas+ort s | pandas+ort rows/s | pandas peak RSS MiB | ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        for n in sizes:
            s_n = o["serving"][n]
            b_n = o["baseline"].get(n)
            base = (f"{b_n['seconds']:.2f} | {b_n['rows_per_s']:,.0f} | {b_n['peak_rss_mib']:.0f} | "
                    f"{s_n['rows_per_s'] / b_n['rows_per_s']:.1f}x") if b_n else "– | – | – | –"
            lines.append(f"| {int(n):,} | {s_n['seconds']:.2f} | {s_n['rows_per_s']:,.0f} | {s_n['peak_rss_mib']:.1f} | {base} |")
        lines += ["", f"Budget: {verdict(s['rows_per_s'] >= 500_000)} rows/s, {verdict(speed >= 5)} ratio, "
                      f"{verdict(flat < 100)} memory."]
    if "startup" in results:
        st = results["startup"]
        s, b = st["serving"], st["baseline"]
        lines += ["", "### Start-up and footprint (budget: ready < 100 ms, idle RSS < 30 MB, stripped binary < 15 MB)", "",
                  "| | serving | baseline | budget |", "|---|---|---|---|",
                  f"| process start to `/v2/health/ready` 200, both models | {s['ready_ms']:.0f} ms | {b['ready_ms']:.0f} ms | {verdict(s['ready_ms'] < 100)} |",
                  f"| idle RSS | {s['idle_rss_mib']:.1f} MiB | {b['idle_rss_mib']:.1f} MiB | {verdict(s['idle_rss_mib'] * 1.048576 < 30)} |",
                  f"| size on disk | {s['binary_mib']:.1f} MiB (stripped binary) | {b['site_packages_mib']:.0f} MiB (site-packages) | {verdict(s['binary_mib'] * 1.048576 < 15)} |"]
    if "training" in results:
        t = results["training"]
        ours, sk = t["serving_trainer_s_per_epoch"], t["sklearn"]["seconds_per_epoch"]
        lines += ["", "### Training on CPU, diamonds (budget: not slower than scikit-learn)", "",
                  "| | trainer (burn, ndarray) | scikit-learn MLPRegressor | ratio | budget |", "|---|---|---|---|---|",
                  f"| seconds per epoch ({t['epochs']} epochs, {t['sklearn']['rows']:,} rows) | {ours:.3f} | {sk:.3f} | "
                  f"{sk / ours:.2f}x | {verdict(ours <= sk)} |"]
    return "\n".join(lines) + "\n"


def write_report(markdown: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{MARK_BEGIN}\n{markdown}{MARK_END}"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n## Latest run\n\n" + block + "\n"
    path.write_text(text)


SECTIONS = {
    "startup": bench_startup,
    "http": bench_http,
    "criterion": bench_criterion,
    "offline": bench_offline,
    "training": bench_training,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections (default: all)")
    parser.add_argument("--quick", action="store_true", help="short runs and small files, to check the harness")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per HTTP load run (default 3, quick 1)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3, quick 1)")
    parser.add_argument("--skip-build", action="store_true", help="use the binaries already built")
    parser.add_argument("--retrain", action="store_true", help="train the bundled models again")
    parser.add_argument("--no-write", action="store_true", help="print the tables, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    args.seconds = args.seconds or (1.0 if args.quick else 3.0)
    args.runs = args.runs or (1 if args.quick else 3)
    args.runs_startup = 3 if args.quick else 5
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")

    ctx = prepare(args)
    results_path = BENCH_DIR / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() and args.only != ",".join(SECTIONS) else {}
    for section in sections:
        log(f"== {section}")
        results[section] = SECTIONS[section](ctx, args)
        results_path.write_text(json.dumps(results, indent=2))
    markdown = report(results, args)
    print(markdown)
    if not args.no_write:
        write_report(markdown)
        log("wrote BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

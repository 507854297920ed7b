#!/usr/bin/env python3
"""Runs every benchmark of BENCHMARKS.md side by side with its peers, on this machine, and
writes the results as markdown tables into BENCHMARKS.md (between the `results` markers) and as
JSON into target/bench/results.json.

    python3 benches/run.py            # everything (about 25 minutes on 2 cores)
    python3 benches/run.py --quick    # shorter runs, for checking the harness itself
    python3 benches/run.py --only http,startup

Sections: startup, http, criterion, offline, training. The peers, all measured in the same run:

- HTTP: the tutorial server (FastAPI + pydantic + uvicorn + onnxruntime on the exported
  model.onnx, benches/baselines/server.py), a tuned Python server (async handlers on the raw
  body, orjson, uvicorn with uvloop and httptools, server_tuned.py) and nginx answering a fixed
  response of the right shape (`return 200`), the floor of any HTTP server on this machine;
- in-process: onnxruntime from Python on the same model and rows (ort_inprocess.py) and the
  arithmetic floor (multiply-adds over the measured sgemm rate);
- offline: polars + onnxruntime (score_polars.py) and pandas + onnxruntime (score_pandas.py);
- training: scikit-learn's MLPRegressor (train_sklearn.py).

Every figure is the median of several runs; HTTP load comes from wrk, on 127.0.0.1 only,
bounded in time.

Pinning: on a 2-core machine the load generator and the server would fight for the same cores,
so every server (ours and each peer alike) runs on core 1 and wrk (one thread) on core 0, for
every row.
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


def shipped_serving() -> Path:
    """The serving binary as it ships (`cargo build -p serving --release` alone, by scripts/build.sh)."""
    return target_dir() / "serving-alone" / "release" / "serving"


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


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def apt_install(package: str) -> None:
    """Installs a Debian package, refreshing the package lists once if the first try fails."""
    log(f"installing {package} (Debian package)")
    command = ["apt-get", "install", "-y", "-qq", package]
    if subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL)
        run(command, stdout=subprocess.DEVNULL)


def prepare(args) -> dict:
    if not shutil.which("wrk"):
        apt_install("wrk")
    if nginx_binary() is None and "http" in args.only:
        apt_install("nginx")
    run([str(ROOT / "scripts" / "python-env.sh"), str(ROOT / "benches" / "baselines" / "requirements.txt")])
    if not args.skip_build:
        run([str(ROOT / "scripts" / "build.sh")], cwd=ROOT)
        run(["cargo", "build", "--release", "-p", "serving", "--target-dir", str(target_dir() / "serving-alone")], cwd=ROOT)
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


# The Python servers by kind: "baseline" is the tutorial one (the name the results have always
# used for it), "tuned" the one a performance-minded user writes.
PYTHON_SERVERS = {"baseline": "server.py", "tuned": "server_tuned.py"}


class Server:
    """A server process on 127.0.0.1, pinned to the server core, stopped on exit: ours
    ("serving") or one of PYTHON_SERVERS."""

    def __init__(self, kind: str, repository: Path):
        self.kind = kind
        self.port = free_port()
        if kind == "serving":
            cmd = [str(shipped_serving()), "serve", "--model-repository", str(repository),
                   "--addr", f"127.0.0.1:{self.port}", "--grpc-addr", "off", "--max-concurrency", "256"]
            env = dict(os.environ, RUST_LOG="warn")
        else:
            cmd = [str(venv_python()), str(ROOT / "benches" / "baselines" / PYTHON_SERVERS[kind]),
                   "--model-repository", str(repository), "--port", str(self.port)]
            env = dict(os.environ, OMP_NUM_THREADS="1")
        self._start(cmd, env)

    def _start(self, cmd: list[str], env: dict) -> None:
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


def nginx_string(text: str) -> str:
    """`text` as a single-quoted nginx config string. nginx would expand `$` in it as a variable,
    and has no escape for that, so a body holding one is refused."""
    if "$" in text:
        raise ValueError(f"a fixed nginx response cannot hold '$': {text[:200]!r}")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Nginx(Server):
    """The HTTP floor: nginx with one worker, pinned to the server core like the others,
    answering each path with `return 200` and a fixed body (access log off, keep-alive
    unbounded). `responses` maps a path to the body it answers with; `/v2/health/ready` is
    added. The config is generated into target/bench/nginx/."""

    def __init__(self, responses: dict[str, bytes]):
        self.kind = "nginx"
        self.port = free_port()
        prefix = BENCH_DIR / "nginx"
        (prefix / "client_body").mkdir(parents=True, exist_ok=True)
        locations = {"/v2/health/ready": b'{"ready":true}', **responses}
        server_block = "\n".join(
            f"        location = {path} {{ return 200 {nginx_string(body.decode())}; }}"
            for path, body in locations.items())
        config = prefix / "nginx.conf"
        config.write_text(f"""# Generated by benches/run.py: the HTTP floor, fixed responses.
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    default_type application/json;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_buffer_size 64k;
    client_body_temp_path {prefix}/client_body;
    server {{
        listen 127.0.0.1:{self.port};
{server_block}
    }}
}}
""")
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (the harness installs the Debian package `nginx`)")
        self._start([binary, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")],
                    dict(os.environ))


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
    shutil.copy(shipped_serving(), stripped)
    subprocess.run(["strip", str(stripped)], check=True)
    results["serving"]["binary_mib"] = stripped.stat().st_size / 2**20
    site = subprocess.run([str(venv_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    results["baseline"]["site_packages_mib"] = sum(
        p.stat().st_size for p in Path(site).rglob("*") if p.is_file()) / 2**20
    return results


def json_shape(value):
    """The shape of a JSON value: objects by key, arrays by length, scalars by type (a number
    and a null are different shapes; the values themselves are not compared)."""
    if isinstance(value, dict):
        return {key: json_shape(v) for key, v in sorted(value.items())}
    if isinstance(value, list):
        return [json_shape(v) for v in value]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else type(value).__name__


def check_same_shape(path: str, ours: bytes, kind: str, theirs: bytes) -> None:
    """A peer's answer to a request has the shape of ours, or the harness stops."""
    if json_shape(json.loads(ours)) != json_shape(json.loads(theirs)):
        raise RuntimeError(f"{kind} answers {path} in another shape than serving:\n"
                           f"  serving: {ours[:400]!r}\n  {kind}: {theirs[:400]!r}")


# The HTTP peers, in the order the tables show them.
HTTP_PEERS = ("nginx", "tuned", "baseline")


def bench_http(ctx, args) -> dict:
    """Every case alternates run by run between our server and its peers, all up at once and
    pinned to the server core (the idle ones asleep), with wrk on the other core. One record per
    request: ours against nginx, the tuned and the tutorial Python servers; 64 records per
    request: ours against the two Python servers."""
    repository = ctx["repository"]
    results = {}
    for name in MODELS:
        manifest = json.loads((latest_version(repository / name) / "manifest.json").read_text())
        rows = complete_rows(data_rows(name), manifest)
        one = [record(rows[0], manifest)]
        many = [record(r, manifest) for r in rows[:64]]
        v1_path, v2_path = f"/v1/models/{name}:predict", f"/v2/models/{name}/infer"
        single = {v1_path: v1_body(one), v2_path: v2_body(one, manifest)}
        # (protocol, rows per request, connections, path, body)
        cases = []
        for connections in (1, 8, 64):
            cases.append(("v1", 1, connections, v1_path, single[v1_path]))
            cases.append(("v2", 1, connections, v2_path, single[v2_path]))
        cases.append(("v1", 64, 8, v1_path, v1_body(many)))
        cases.append(("v2", 64, 8, v2_path, v2_body(many, manifest)))
        with (Server("serving", repository) as serving, Server("baseline", repository) as baseline,
              Server("tuned", repository) as tuned):
            python_servers = {"baseline": baseline, "tuned": tuned}
            # The floor answers each single-record path with our server's own answer to the
            # request measured, byte for byte.
            fixed = {path: serving.post(path, body) for path, body in single.items()}
            with Nginx(fixed) as nginx:
                for protocol, n_rows, connections, path, body in cases:
                    servers = {"serving": serving, **python_servers}
                    if n_rows == 1:
                        servers["nginx"] = nginx
                    ours = serving.post(path, body)  # the request is valid before it is measured
                    for kind, server in servers.items():
                        if kind != "serving":
                            check_same_shape(path, ours, kind, server.post(path, body))
                    key = f"{name}/{protocol}/rows{n_rows}/c{connections}"
                    log(f"http {key}")
                    for kind, series in load_series(servers, path, body, connections, args.seconds, args.runs,
                                                    LOAD_CORE).items():
                        series["rows_per_s"] = series["rps"] * n_rows
                        results.setdefault(key, {})[kind] = series
    return results


def criterion_once(ctx, args) -> dict:
    """One run of the criterion benches: criterion's median, in ns, by bench id."""
    env = dict(os.environ, BENCH_MODEL_REPOSITORY=str(ctx["repository"]))
    criterion_dir = target_dir() / "criterion"
    timing = ["--warm-up-time", "1", "--measurement-time", "2" if args.quick else "5"]
    shutil.rmtree(criterion_dir, ignore_errors=True)
    run(["cargo", "bench", "-p", "benchmarks", "--bench", "predictor", "--", *timing], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL)
    estimates = {}
    for bench_file in criterion_dir.rglob("new/benchmark.json"):
        meta = json.loads(bench_file.read_text())
        est = json.loads((bench_file.parent / "estimates.json").read_text())
        estimates[meta["full_id"]] = est["median"]["point_estimate"]
    return estimates


def onnxruntime_once(ctx, args) -> dict:
    """One run of onnxruntime (Python, one thread) on the same models, rows and batch sizes as the
    criterion benches (benches/baselines/ort_inprocess.py): µs per batch by model and size."""
    cmd = [str(venv_python()), str(ROOT / "benches" / "baselines" / "ort_inprocess.py"),
           "--seconds", "0.5" if args.quick else "1.5", "--data-dir", str(ROOT / "data")]
    for name in MODELS:
        cmd += ["--model", f"{name}={latest_version(ctx['repository'] / name)}"]
    out = run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_criterion(ctx, args) -> dict:
    """The criterion benches and onnxruntime's in-process peer, `args.runs` times each, run by
    run in turn so that a slow spell of the machine falls on both; each figure is the median
    over the runs (criterion's own median within a run), and each ratio (to the floor, to
    onnxruntime) is taken within a run before the median is taken."""
    runs, ort_runs = [], []
    for index in range(args.runs):
        log(f"criterion run {index + 1} of {args.runs}")
        runs.append(criterion_once(ctx, args))
        log(f"onnxruntime in-process run {index + 1} of {args.runs}")
        ort_runs.append(onnxruntime_once(ctx, args))
    return summarize_criterion(ctx, runs, ort_runs)


def summarize_criterion(ctx, runs: list[dict], ort_runs: list[dict]) -> dict:
    sgemm_id = next(k for k in runs[0] if k.startswith("floor/sgemm/"))
    n = int(sgemm_id.rsplit("/", 1)[1])
    madds_per_ns = [n**3 / r[sgemm_id] for r in runs]
    results = {"sgemm_gflops": 2 * median(madds_per_ns), "runs": len(runs),
               "onnxruntime": ort_runs[0]["onnxruntime"], "models": {}}
    for name in MODELS:
        network = json.loads((latest_version(ctx["repository"] / name) / "manifest.json").read_text())["network"]
        dims = [network["n_features"], *network["hidden_layers"], network["n_outputs"]]
        madds = sum(a * b for a, b in zip(dims, dims[1:]))
        per_batch, ort_batches, ort_ratios = {}, {}, {}
        for rows in (1, 64, 4096):
            ns = median([r[f"predictor/{name}/{rows}"] for r in runs])
            per_batch[str(rows)] = {"batch_us": ns / 1000, "row_ns": ns / rows}
            ort_us = [o["models"][name][str(rows)]["batch_us"] for o in ort_runs]
            ort_batches[str(rows)] = {"batch_us": median(ort_us), "row_ns": median(ort_us) * 1000 / rows}
            # How many times faster ours is than onnxruntime, run by run.
            each = [o_us * 1000 / r[f"predictor/{name}/{rows}"] for r, o_us in zip(runs, ort_us)]
            ort_ratios[str(rows)] = {"ratio": median(each), "runs": each}
        forward_ns = [r[f"forward/{name}/4096"] for r in runs if f"forward/{name}/4096" in r]
        ratios = [r[f"predictor/{name}/4096"] / 4096 / (madds / rate) for r, rate in zip(runs, madds_per_ns)]
        results["models"][name] = {
            "forward_4096_row_ns": median(forward_ns) / 4096 if forward_ns else None,
            "multiply_adds_per_row": madds,
            "floor_row_ns": madds / median(madds_per_ns),
            "batches": per_batch,
            "ratio_4096_to_floor": median(ratios),
            "ratio_4096_to_floor_runs": ratios,
            "onnxruntime_batches": ort_batches,
            "speedup_over_onnxruntime": ort_ratios,
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


OFFLINE_PEERS = {"polars": "score_polars.py", "baseline": "score_pandas.py"}


def bench_offline(ctx, args) -> dict:
    """`serving predict` and polars + onnxruntime on the same CSV of diamonds rows, `args.runs`
    times each, in turn; pandas + onnxruntime (the tutorial route, slow) once. Each figure is the
    median of its runs' wall time; memory is the peak RSS of the whole process."""
    model = latest_version(ctx["repository"] / "diamonds")
    rows = 100_000 if args.quick else 4_000_000
    path = BENCH_DIR / f"diamonds-{rows}.csv"
    if not path.exists():
        run([sys.executable, str(ROOT / "benches" / "make_rows.py"), "--rows", str(rows), "--output", str(path)])
    out = BENCH_DIR / "scored.csv"
    commands = {"serving": [str(shipped_serving()), "predict", "--model", str(model)]}
    for kind, script in OFFLINE_PEERS.items():
        commands[kind] = [str(venv_python()), str(ROOT / "benches" / "baselines" / script), "--model", str(model)]
    # The Python scorers get both cores, as ours has: polars reads on its own thread pool,
    # onnxruntime runs with one intra-op thread beside it.
    env = dict(os.environ, OMP_NUM_THREADS="2")
    measured = {kind: [] for kind in commands}
    for index in range(args.runs):
        for kind, command in commands.items():
            if kind == "baseline" and index > 0:
                continue
            log(f"offline {kind} {rows:,} rows, run {index + 1}")
            measured[kind].append(measure_command([*command, "--input", str(path), "--output", str(out)], env=env))
    out.unlink(missing_ok=True)
    results = {}
    for kind, runs in measured.items():
        seconds = median([r[0] for r in runs])
        results[kind] = {str(rows): {"seconds": seconds, "peak_rss_mib": max(r[1] for r in runs),
                                     "rows_per_s": rows / seconds, "runs": len(runs)}}
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


PEER_NAMES = {"nginx": "nginx", "tuned": "tuned Python", "baseline": "tutorial FastAPI"}


def http_budget(connections: int, ratios: dict[str, float]) -> str:
    """Budget 1: one record per request, against the floor and the tuned server."""
    if connections == 64:
        misses = [f"{ratios['nginx']:.2f}x nginx < 0.75x"] if ratios["nginx"] < 0.75 else []
        misses += [f"{ratios['tuned']:.1f}x tuned < 20x"] if ratios["tuned"] < 20 else []
    elif connections == 1:
        misses = [f"{ratios['nginx']:.2f}x nginx < 0.90x"] if ratios["nginx"] < 0.9 else []
    else:
        return "(no budget)"
    return "met" if not misses else f"**missed** ({'; '.join(misses)})"


def report(results: dict, args) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
             f"`python3 benches/run.py{' --quick' if args.quick else ''}`. Every server pinned to core {SERVER_CORE}, "
             f"wrk (1 thread) to core {LOAD_CORE}, for every row; each HTTP figure the median of {args.runs} runs "
             f"of {args.seconds:g} s, alternating run by run between our server and its peers.", ""]
    if "http" in results:
        lines += ["### HTTP, one record per request (budget: at 64 connections ≥ 0.75x nginx and ≥ 20x the tuned "
                  "Python server; at 1 connection ≥ 0.90x nginx; v1 and v2)", "",
                  "Each ratio is our req/s over the peer's. nginx answers our own response body with `return 200`: "
                  "the floor of any HTTP server here.", "",
                  "| model | protocol | conns | serving req/s | nginx req/s | ratio | tuned Python req/s | ratio | "
                  "tutorial FastAPI req/s | ratio | p99 ms: serving / nginx / tuned / tutorial | budget |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        batch_lines = []
        for key, value in results["http"].items():
            name, protocol, rows, conns = key.split("/")
            s = value["serving"]
            connections = int(conns[1:])
            if rows == "rows1":
                cells, ratios = [], {}
                for peer in HTTP_PEERS:
                    ratios[peer] = s["rps"] / value[peer]["rps"]
                    cells.append(f"{value[peer]['rps']:,.0f} | {ratios[peer]:.2f}x" if peer == "nginx"
                                 else f"{value[peer]['rps']:,.0f} | {ratios[peer]:.1f}x")
                p99 = " / ".join(f"{value[k]['p99_ms']:.2f}" for k in ("serving", *HTTP_PEERS))
                lines.append(f"| {name} | {protocol} | {connections} | {s['rps']:,.0f} | {' | '.join(cells)} | {p99} | "
                             f"{http_budget(connections, ratios)} |")
            else:
                t, b = value["tuned"], value["baseline"]
                ok = s["rows_per_s"] / b["rows_per_s"] >= 10
                batch_lines.append(f"| {name} | {protocol} | {connections} | {s['rows_per_s']:,.0f} | "
                                   f"{t['rows_per_s']:,.0f} | {s['rows_per_s'] / t['rows_per_s']:.1f}x | "
                                   f"{b['rows_per_s']:,.0f} | {s['rows_per_s'] / b['rows_per_s']:.1f}x | {verdict(ok)} |")
        lines += ["", "### HTTP, 64 records per request (budget: rows/s ≥ 10x the tutorial FastAPI server)", "",
                  "| model | protocol | conns | serving rows/s | tuned Python rows/s | ratio | tutorial FastAPI rows/s | ratio | budget |",
                  "|---|---|---|---|---|---|---|---|---|", *batch_lines]
    if "criterion" in results:
        c = results["criterion"]
        lines += ["", f"### In-process Predictor (criterion; budget: batch 4096 within 1.6x of the floor)", "",
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
                         f"{verdict(m['ratio_4096_to_floor'] <= 1.6)} |")
        lines += ["", f"#### Against onnxruntime (budget: ≥ 5x at batch 1, ≥ 2x at batch 4096)", "",
                  f"onnxruntime {c.get('onnxruntime', '')} from Python, one intra-op and one inter-op thread, "
                  f"sequential, on the same `model.onnx` and rows; `session.run` alone is timed, on feeds already "
                  f"built (float32 and string `[N, 1]` columns), while the Predictor starts from records. The "
                  f"ratio is onnxruntime's time over ours, taken within each run.", "",
                  "| model | rows | Predictor µs | onnxruntime µs | ratio | ratio in each run | budget |",
                  "|---|---|---|---|---|---|---|"]
        for name, m in c["models"].items():
            for rows, want in (("1", 5), ("64", None), ("4096", 2)):
                speedup = m["speedup_over_onnxruntime"][rows]
                each = ", ".join(f"{r:.1f}x" for r in speedup["runs"])
                budget = verdict(speedup["ratio"] >= want) if want else "(no budget)"
                lines.append(f"| {name} | {int(rows):,} | {m['batches'][rows]['batch_us']:.2f} | "
                             f"{m['onnxruntime_batches'][rows]['batch_us']:.2f} | {speedup['ratio']:.1f}x | {each} | {budget} |")
    if "offline" in results:
        o = results["offline"]
        rows = max(o["serving"], key=int)
        ours = o["serving"][rows]
        lines += ["", f"### Offline scoring of {int(rows):,} diamonds rows (budget: ≥ 4x polars + onnxruntime at "
                      f"4,000,000 rows; memory reported)", "",
                  f"Wall time of the whole process, CSV in to CSV out, median of {ours.get('runs', 1)} runs "
                  f"(pandas: one run); peak RSS the largest of the runs. The ratio is the peer's time over ours.", "",
                  "| scorer | s | rows/s | peak RSS MiB | ratio |", "|---|---|---|---|---|",
                  f"| `serving predict` | {ours['seconds']:.2f} | {ours['rows_per_s']:,.0f} | {ours['peak_rss_mib']:.1f} | – |"]
        for kind, label in (("polars", "polars + onnxruntime"), ("baseline", "pandas + onnxruntime")):
            peer = o.get(kind, {}).get(rows)
            if peer:
                lines.append(f"| {label} | {peer['seconds']:.2f} | {peer['rows_per_s']:,.0f} | {peer['peak_rss_mib']:.0f} | "
                             f"{peer['seconds'] / ours['seconds']:.1f}x |")
        polars = o.get("polars", {}).get(rows)
        speed = polars["seconds"] / ours["seconds"] if polars else float("nan")
        at = "" if int(rows) == 4_000_000 else f" (measured at {int(rows):,} rows, not the budget's 4,000,000)"
        lines += ["", f"Budget: {verdict(speed >= 4)}, {speed:.1f}x polars + onnxruntime{at}."]
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


def replace_block(text: str, begin: str, end: str, markdown: str) -> str | None:
    """`text` with what lies between the markers `begin` and `end` replaced by `markdown`;
    None when the markers are not both there."""
    if begin not in text or end not in text:
        return None
    head, rest = text.split(begin, 1)
    return head + f"{begin}\n{markdown}{end}" + rest.split(end, 1)[1]


def write_report(markdown: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    replaced = replace_block(text, MARK_BEGIN, MARK_END, markdown)
    if replaced is None:
        replaced = text.rstrip() + "\n\n## Latest run\n\n" + f"{MARK_BEGIN}\n{markdown}{MARK_END}" + "\n"
    path.write_text(replaced)


def current_format(section: str, value: dict) -> bool:
    """Whether a section kept in results.json from an earlier run has the peers this harness
    reports (an older harness measured fewer); older ones are left out of the report."""
    if section == "http":
        return all("nginx" in v and "tuned" in v for k, v in value.items() if "/rows1/" in k) and \
            not any(k.endswith("-cross-core") for k in value)
    if section == "criterion":
        return all("speedup_over_onnxruntime" in m for m in value.get("models", {}).values())
    if section == "offline":
        return "polars" in value
    return True


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
    results = {section: value for section, value in results.items() if current_format(section, value)}
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

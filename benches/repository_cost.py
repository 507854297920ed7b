#!/usr/bin/env python3
"""What the live model repository costs: CPU spent polling an idle repository, and memory across
repeated unload/load cycles. Figures for BENCHMARKS.md.

What it measures
----------------
(a) Polling cost. A repository of 100 models x 3 versions (m000..m099, versions 1..3) is built
    by copying one small trained model version; each copy's manifest gets its "name" and
    "version" rewritten and its `manifest_sha256` recomputed (SHA-256 of the manifest's compact
    JSON with that field set to "", exactly as shared_inference serializes it: the script keeps
    every number's text as it is in the file, so no float is re-printed; it first checks that
    this reproduces the source manifest's own checksum, and exits 2 if it does not).
    `serving serve --model-control poll --poll-interval-seconds 2` is started on it, pinned to
    CPU 0; once ready the script waits 10 s, then reads the server's CPU time (utime + stime of
    /proc/PID/stat) before and after 60 s of idle and reports it as % of one core, and per poll.
    Without a `versions` policy only the latest version of each model is served (100 loaded);
    a second run adds a serving.toml giving every model `versions = "all"` (300 loaded). The
    loaded count is read from POST /v2/repository/index.
(b) Memory across load/unload. `--model-control explicit` on a repository of one model; the
    script POSTs /v2/repository/models/m000/unload then .../load 200 times (each must answer
    200) and reads VmRSS of /proc/PID/status after the first and after the last cycle. Target:
    the last within 10% of the first. It also records RSS and the thread count every 20 cycles,
    and both again 12 s after the last cycle (tokio's idle blocking threads, which run the loads,
    exit after 10 s).

The source model version is --source DIR if given, else the first current-format version found
under target/bench/models, else one trained here with target/release/trainer (penguins, 2
epochs, CPU) into target/bench/repository-cost/source.

How to run
----------
    cargo build --release -p serving -p trainer
    python3 benches/repository_cost.py [--serving target/release/serving] [--json OUT.json]
        [--idle-seconds 60] [--cycles 200] [--skip-all-versions]

Safety: traffic goes only to 127.0.0.1, to the servers this script starts; the whole run is
bounded by --time-limit (300 s); every server is stopped (SIGTERM, then SIGKILL) however the
run ends. Standard library only, Python 3.9+, Linux (/proc, sched_setaffinity).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
FORMAT_VERSION = 2
MODELS = 100
VERSIONS = 3
READY_TIMEOUT_S = 60.0
RSS_TARGET_RATIO = 1.10
TRAJECTORY_EVERY = 20
IDLE_AFTER_CYCLES_S = 12.0


def log(message: str) -> None:
    print(f"[repository_cost] {message}", file=sys.stderr, flush=True)


class Abort(Exception):
    """The run cannot go on (time limit, a signal, or a step that failed)."""


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


# ---------------------------------------------------------------------------------------------
# Manifests: compact JSON exactly as serde_json writes it, numbers kept as their text.


class Number(str):
    """A JSON number, kept as the text it was written as."""


def load_manifest(text: str) -> dict:
    return json.loads(text, parse_float=Number, parse_int=Number)


def compact(value) -> str:
    if isinstance(value, Number):
        return str.__str__(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError(f"a float ({value!r}) that did not come from the file")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(compact(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + compact(v) for k, v in value.items()) + "}"
    raise ValueError(f"unexpected JSON value {value!r}")


def content_sha256(manifest: dict) -> str:
    content = dict(manifest)
    content["manifest_sha256"] = ""
    return hashlib.sha256(compact(content).encode("utf-8")).hexdigest()


def is_current_version_dir(path: Path) -> bool:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return manifest.get("format_version") == FORMAT_VERSION and "manifest_sha256" in manifest


def find_source(args) -> Path:
    if args.source:
        source = Path(args.source)
        if not is_current_version_dir(source):
            raise Abort(f"--source {source}: no manifest.json of format {FORMAT_VERSION} there")
        return source
    bench_models = target_dir() / "bench" / "models"
    candidates = sorted(bench_models.glob("*/*/manifest.json"), key=lambda p: p.stat().st_size)
    for manifest in candidates:
        if is_current_version_dir(manifest.parent):
            return manifest.parent
    trained = target_dir() / "bench" / "repository-cost" / "source"
    existing = [m.parent for m in sorted(trained.glob("penguins/*/manifest.json")) if is_current_version_dir(m.parent)]
    if existing:
        return existing[-1]
    trainer = target_dir() / "release" / "trainer"
    if not trainer.exists():
        raise Abort(f"no current-format model under {bench_models} and no {trainer} to train one "
                    "(cargo build --release -p trainer, or give --source DIR)")
    log(f"no current-format model under {bench_models}; training penguins (2 epochs) into {trained}")
    subprocess.run([str(trainer), "train", "--config", str(ROOT / "configs" / "penguins.toml"), "--out", str(trained),
                    "--epochs", "2", "--device", "cpu", "--quiet"], check=True, cwd=ROOT, timeout=120,
                   stdout=subprocess.DEVNULL)
    existing = [m.parent for m in sorted(trained.glob("penguins/*/manifest.json")) if is_current_version_dir(m.parent)]
    if not existing:
        raise Abort(f"the trainer wrote no current-format version under {trained}")
    return existing[-1]


def check_checksum_reproduced(source: Path) -> dict:
    manifest = load_manifest((source / "manifest.json").read_text(encoding="utf-8"))
    stored = str.__str__(manifest["manifest_sha256"])
    actual = content_sha256(manifest)
    if actual != stored:
        print(f"The manifest checksum of {source / 'manifest.json'} could not be reproduced: its manifest_sha256 is "
              f"{stored}, this script computes {actual}. The script's compact JSON does not match serde_json's "
              "byte for byte for this manifest, so the copies it would write would not load. Nothing was measured.",
              file=sys.stderr)
        sys.exit(2)
    return manifest


def write_version(source: Path, manifest: dict, root: Path, name: str, version: int) -> None:
    target = root / name / str(version)
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.is_file() and entry.name != "manifest.json":
            shutil.copyfile(entry, target / entry.name)
    copy = dict(manifest)
    copy["name"] = name
    copy["version"] = version
    copy["manifest_sha256"] = content_sha256(copy)
    (target / "manifest.json").write_text(compact(copy), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The server


def pin(cpu: int) -> None:
    try:
        if cpu in os.sched_getaffinity(0):
            os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


class Server:
    """`serving serve` on 127.0.0.1:0, its address read from its JSON log; stopped by stop()."""

    def __init__(self, serving: Path, root: Path, extra: list[str]):
        command = [str(serving), "serve", "--model-repository", str(root), "--addr", f"{HOST}:0", "--grpc-addr", "off",
                   "--log-format", "json", *extra]
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        self.tail: deque[str] = deque(maxlen=50)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env, text=True, preexec_fn=lambda: pin(0))
        self.port: int | None = None
        self._listening = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._listening.wait(30.0) or self.port is None:
            raise Abort(f"the server did not log its address; its log:\n" + "\n".join(self.tail))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.tail.append(line.rstrip("\n"))
            if self.port is None:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("message") == "listening" and isinstance(entry.get("addr"), str):
                    self.port = int(entry["addr"].rsplit(":", 1)[1])
                    self._listening.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(self, method: str, path: str, body: bytes = b"", timeout: float = 30.0) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def wait_ready(self, deadline: float) -> float:
        """Waits for readiness; returns the seconds since the process was started."""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Abort(f"the server exited with {self.proc.returncode}; its log:\n" + "\n".join(self.tail))
            try:
                status, _ = self.request("GET", "/v2/health/ready", timeout=5.0)
                if status == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        raise Abort("the server never became ready; its log:\n" + "\n".join(self.tail))

    def index(self) -> list[dict]:
        status, body = self.request("POST", "/v2/repository/index")
        if status != 200:
            raise Abort(f"repository index: status {status}: {body[:300]!r}")
        return json.loads(body)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # Fields 14 and 15 of proc(5); fields[0] here is field 3 (state).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def threads(self) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        raise Abort("no Threads in /proc/PID/status")

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise Abort("no VmRSS in /proc/PID/status")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------------------------
# Measurements


def measure_polling(serving: Path, root: Path, label: str, idle_s: float, settle_s: float, deadline: float) -> dict:
    log(f"{label}: starting the server (poll every 2 s, pinned to CPU 0)")
    server = Server(serving, root, ["--model-control", "poll", "--poll-interval-seconds", "2"])
    try:
        ready_s = server.wait_ready(deadline)
        index = server.index()
        states: dict[str, int] = {}
        for entry in index:
            states[entry["state"]] = states.get(entry["state"], 0) + 1
        loaded = states.get("READY", 0)
        log(f"{label}: ready {ready_s:.2f} s after start; index: {states}; idling {settle_s:.0f} s, then measuring {idle_s:.0f} s")
        time.sleep(settle_s)
        cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
        time.sleep(idle_s)
        cpu_after, wall_after = server.cpu_seconds(), time.monotonic()
        rss = server.rss_kib()
        if server.proc.poll() is not None:
            raise Abort(f"{label}: the server exited during the measurement")
        wall = wall_after - wall_before
        cpu = cpu_after - cpu_before
        polls = wall / 2.0
        result = {
            "label": label,
            "models": len({e["name"] for e in index}),
            "versions_on_disk": len(index),
            "loaded_versions": loaded,
            "index_states": states,
            "ready_seconds_from_start": round(ready_s, 3),
            "idle_wall_seconds": round(wall, 2),
            "cpu_seconds": round(cpu, 3),
            "cpu_percent_of_one_core": round(100.0 * cpu / wall, 3),
            "cpu_ms_per_poll": round(1000.0 * cpu / polls, 2),
            "clock_ticks_per_second": os.sysconf("SC_CLK_TCK"),
            "rss_mib": round(rss / 1024.0, 1),
        }
        log(f"{label}: {result['cpu_percent_of_one_core']:.2f}% of one core ({cpu:.2f} s CPU in {wall:.1f} s, "
            f"~{result['cpu_ms_per_poll']:.1f} ms per poll), {loaded} versions loaded, RSS {result['rss_mib']} MiB")
        return result
    finally:
        server.stop()


def measure_load_unload(serving: Path, root: Path, cycles: int, deadline: float) -> dict:
    log(f"load/unload: starting the server (explicit model control), {cycles} cycles")
    server = Server(serving, root, ["--model-control", "explicit"])
    try:
        server.wait_ready(deadline)
        rss_start = server.rss_kib()
        connection = http.client.HTTPConnection(HOST, server.port, timeout=30.0)
        failures: list[str] = []
        rss_first = None
        trajectory: list[list] = []
        started = time.monotonic()

        def call(path: str) -> int:
            connection.request("POST", path, body=b"", headers={"Content-Length": "0"})
            response = connection.getresponse()
            body = response.read()
            if response.status != 200 and len(failures) < 10:
                failures.append(f"{path}: {response.status} {body[:200]!r}")
            return response.status

        statuses = {"unload": 0, "load": 0}
        for cycle in range(1, cycles + 1):
            if time.monotonic() > deadline:
                raise Abort(f"time limit reached after {cycle - 1} load/unload cycles")
            for action in ("unload", "load"):
                if call(f"/v2/repository/models/m000/{action}") == 200:
                    statuses[action] += 1
            if cycle == 1:
                rss_first = server.rss_kib()
            if cycle == 1 or cycle % TRAJECTORY_EVERY == 0 or cycle == cycles:
                trajectory.append([cycle, round(server.rss_kib() / 1024.0, 2), server.threads()])
        elapsed = time.monotonic() - started
        connection.close()
        rss_last = server.rss_kib()
        threads_last = server.threads()
        status, _ = server.request("GET", "/v2/health/ready")
        # Tokio's blocking threads (loads run on them) exit after 10 s idle: does memory follow?
        time.sleep(IDLE_AFTER_CYCLES_S)
        rss_idle, threads_idle = server.rss_kib(), server.threads()
        if failures:
            raise Abort(f"load/unload calls that did not answer 200: {failures}")
        ratio = rss_last / rss_first
        result = {
            "cycles": cycles,
            "ok_unloads": statuses["unload"],
            "ok_loads": statuses["load"],
            "seconds": round(elapsed, 2),
            "ms_per_cycle": round(1000.0 * elapsed / cycles, 2),
            "rss_at_start_mib": round(rss_start / 1024.0, 2),
            "rss_after_first_cycle_mib": round(rss_first / 1024.0, 2),
            "rss_after_last_cycle_mib": round(rss_last / 1024.0, 2),
            "rss_ratio_last_to_first": round(ratio, 4),
            "threads_after_first_cycle": trajectory[0][2],
            "threads_after_last_cycle": threads_last,
            "rss_after_idle_mib": round(rss_idle / 1024.0, 2),
            "threads_after_idle": threads_idle,
            "idle_seconds_after_cycles": IDLE_AFTER_CYCLES_S,
            "trajectory_cycle_rss_mib_threads": trajectory,
            "target_ratio": RSS_TARGET_RATIO,
            "within_target": ratio <= RSS_TARGET_RATIO,
            "ready_after": status == 200,
        }
        log(f"load/unload: RSS {result['rss_after_first_cycle_mib']} MiB after cycle 1, "
            f"{result['rss_after_last_cycle_mib']} MiB after cycle {cycles} (x{ratio:.3f}); "
            f"{result['ms_per_cycle']} ms per cycle; threads {result['threads_after_first_cycle']} -> {threads_last}; "
            f"after {IDLE_AFTER_CYCLES_S:.0f} s idle: {result['rss_after_idle_mib']} MiB, {threads_idle} threads")
        return result
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serving", default=str(target_dir() / "release" / "serving"))
    parser.add_argument("--source", help="a trained model version directory to copy (default: see above)")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--settle-seconds", type=float, default=10.0)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--skip-all-versions", action="store_true", help="skip the run with versions = \"all\"")
    parser.add_argument("--time-limit", type=float, default=300.0)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    started = time.monotonic()
    deadline = started + args.time_limit

    def on_alarm(signum, frame):
        raise Abort(f"time limit of {args.time_limit:.0f} s reached")

    def on_term(signum, frame):
        raise Abort(f"stopped by signal {signum}")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(int(args.time_limit) + 1)
    # The script itself off the server's CPU, where there is another one.
    cpus = os.sched_getaffinity(0)
    if len(cpus) > 1 and 0 in cpus:
        os.sched_setaffinity(0, cpus - {0})

    serving = Path(args.serving)
    if not serving.exists():
        log(f"{serving} does not exist: cargo build --release -p serving")
        return 1
    results: dict = {"serving": str(serving), "cpus": sorted(cpus)}
    try:
        source = find_source(args)
        manifest = check_checksum_reproduced(source)
        log(f"source version: {source} (model '{manifest['name']}'), its checksum reproduced")
        results["source"] = str(source)
        with tempfile.TemporaryDirectory(prefix="repository-cost-") as work:
            repo = Path(work) / "many"
            for m in range(MODELS):
                for v in range(1, VERSIONS + 1):
                    write_version(source, manifest, repo, f"m{m:03d}", v)
            log(f"wrote {MODELS} models x {VERSIONS} versions under {repo}")
            runs = [measure_polling(serving, repo, "default policy", args.idle_seconds, args.settle_seconds, deadline)]
            if not args.skip_all_versions:
                config = "".join(f"[model.m{m:03d}]\nversions = \"all\"\n\n" for m in range(MODELS))
                (repo / "serving.toml").write_text(config, encoding="utf-8")
                runs.append(measure_polling(serving, repo, "versions = \"all\"", args.idle_seconds,
                                            args.settle_seconds, deadline))
            results["polling"] = runs
            one = Path(work) / "one"
            write_version(source, manifest, one, "m000", 1)
            results["load_unload"] = measure_load_unload(serving, one, args.cycles, deadline)
    except Abort as error:
        log(f"aborted: {error}")
        return 1
    finally:
        signal.alarm(0)
    results["wall_seconds"] = round(time.monotonic() - started, 1)

    print("Repository cost (serving, poll interval 2 s, server pinned to CPU 0)")
    for run in results["polling"]:
        print(f"  polling, {run['models']} models x {run['versions_on_disk'] // max(run['models'], 1)} versions, "
              f"{run['label']}: {run['loaded_versions']} versions loaded; idle CPU "
              f"{run['cpu_percent_of_one_core']:.2f}% of one core over {run['idle_wall_seconds']:.0f} s "
              f"({run['cpu_ms_per_poll']:.1f} ms per poll); RSS {run['rss_mib']} MiB; ready {run['ready_seconds_from_start']} s after start")
    lu = results["load_unload"]
    print(f"  load/unload x{lu['cycles']} (explicit, one model): RSS {lu['rss_after_first_cycle_mib']} MiB after "
          f"the 1st cycle, {lu['rss_after_last_cycle_mib']} MiB after the last: x{lu['rss_ratio_last_to_first']:.3f} "
          f"(target <= x{RSS_TARGET_RATIO:.2f}: {'met' if lu['within_target'] else 'MISSED'}); "
          f"{lu['ms_per_cycle']} ms per cycle; all {lu['ok_unloads']} unloads and {lu['ok_loads']} loads answered 200")
    print(f"    server threads {lu['threads_after_first_cycle']} after the 1st cycle, {lu['threads_after_last_cycle']} after "
          f"the last; {lu['idle_seconds_after_cycles']:.0f} s later: {lu['rss_after_idle_mib']} MiB, "
          f"{lu['threads_after_idle']} threads")
    print("    RSS MiB/threads by cycle: " + " ".join(f"{c}:{r}/{t}" for c, r, t in lu["trajectory_cycle_rss_mib_threads"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

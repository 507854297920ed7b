#!/usr/bin/env python3
"""The gRPC section of the benchmarks: `serving serve --grpc-addr` (inference.GRPCInferenceService,
the Open Inference Protocol over HTTP/2) against the Python peer a latency-minded user writes
(benches/baselines/grpc_server.py: grpcio + onnxruntime, one thread), and against our own HTTP v2
endpoint, all under the same load generator (h2load).

    python3 benches/grpc_bench.py                     # prints the markdown (about 10 minutes on 2 cores)
    python3 benches/grpc_bench.py --write-benchmarks  # and writes it into BENCHMARKS.md
    python3 benches/grpc_bench.py --runs 1 --seconds 2 --skip-build   # a quick check of the harness

Preparation is benches/run.py's `prepare()`: the Python packages of
benches/baselines/requirements.txt into .venv, the binaries (scripts/build.sh and the shipped
`serving` alone, unless --skip-build), the bundled models `penguins` (classification) and
`diamonds` (regression) trained into target/bench/models. h2load comes from Debian's
`nghttp2-client`, installed if missing. The harness then runs itself again under .venv's
Python, which has grpcio and the generated stubs of tritonclient.

For each model, 1 and 64 records per request (complete rows of data/<model>.csv), and 1, 8 and
64 concurrent streams:

- ours over gRPC: a ModelInfer request as tritonclient sends it (numeric inputs FP64 and text
  BYTES in `raw_input_contents`), gRPC-framed, posted by h2load over h2c with C = max(1, S/8)
  connections of S/C streams each;
- ours over HTTP v2: `POST /v2/models/<m>/infer` with the binary tensor extension (a JSON header
  with `binary_data_size` per input, `Inference-Header-Content-Length`, raw tensors after it,
  binary outputs asked for, as tritonclient's HTTP client does), h2load --h1 with S connections,
  one request in flight each;
- the Python peer over gRPC, the same bytes and the same h2load settings as ours.

Both servers are pinned to core 1 (run.py's SERVER_CORE), up at once, h2load (one thread) to core
0; after a warm-up run each, the runs alternate between the three targets run by run, and each
figure is the median of --runs runs of --seconds. Before a case is measured every target answers
its request once (grpcio on the raw message, http.client for HTTP): the call must be OK and the
outputs of the Python peer and of our HTTP v2 endpoint must agree with ours (same names,
datatypes and shapes, labels equal, numbers within 1e-4 relative). A run fails the harness on any
failed, errored or timed-out request, any non-2xx status, or any response that is not the
expected size: a gRPC error comes back as HTTP 200 with a `grpc-status` trailer and no message,
so h2load alone would count it a success; every answer to the same request is the same bytes,
so the received DATA bytes must be exactly done x the size of the verified answer.

Everything listens on 127.0.0.1 only; every process started is stopped at the end, on error too.
Raw figures go to target/bench/grpc.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))
from run import (  # noqa: E402  (the harness's helpers)
    BENCH_DIR,
    LOAD_CORE,
    MARK_END as RESULTS_END,
    MODELS,
    SERVER_CORE,
    Server,
    apt_install,
    replace_block,
    complete_rows,
    data_rows,
    free_port,
    latest_version,
    log,
    machine,
    median,
    pinned,
    prepare,
    record,
    shipped_serving,
    target_dir,
    venv_python,
    verdict,
)

# run.py is imported; benches/ leaves the path again, so that nothing there shadows a package.
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != ROOT / "benches"]

MARK_BEGIN = "<!-- grpc:begin -->"
MARK_END = "<!-- grpc:end -->"
SECTION = "## gRPC (Open Inference Protocol over HTTP/2)"
COMMAND = "python3 benches/grpc_bench.py --write-benchmarks"
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
STREAMS = (1, 8, 64)
BATCHES = (1, 64)
BUDGET = 10.0  # ours over gRPC, req/s, over the Python peer's
TOLERANCE = 1e-4  # relative, for the numbers two servers answer
RESULTS = BENCH_DIR / "grpc.json"
# The targets of one case, in the order they run and the tables show them.
TARGETS = ("grpc", "http", "python")
LABELS = {"grpc": "ours gRPC", "http": "ours HTTP v2", "python": "Python gRPC"}


# ---------------------------------------------------------------------------------------------
# Servers (grpcio is imported lazily: the first pass of the harness runs outside .venv)


def grpc_options() -> list:
    # grpcio honours http_proxy; everything here is loopback.
    return [("grpc.enable_http_proxy", 0)]


def grpc_ready(port: int) -> bool:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}", options=grpc_options()) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            return stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=1).ready
        except grpc.RpcError:
            return False


def wait_for_grpc(server, port: int, name: str, limit: float, step: float) -> float:
    """Seconds from `server`'s start until gRPC's ServerReady answers on `port`; raises when its
    process exits first or `limit` seconds pass."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{name} exited early: {server.process.stderr.read().decode(errors='replace')}")
        if grpc_ready(port):
            return time.perf_counter() - server.started
        time.sleep(step)
    raise RuntimeError(f"{name}'s gRPC listener (127.0.0.1:{port}) not ready after {limit} s")


class StoppedOnFailure:
    """run.py's Server starts its process in __init__, so a failure there (not ready, exited)
    happens before any `with` owns it: stop it here, then raise."""

    def _start(self, cmd: list[str], env: dict) -> None:
        try:
            super()._start(cmd, env)
        except BaseException:
            if getattr(self, "process", None) is not None:
                self.stop()
            raise


class OurServer(StoppedOnFailure, Server):
    """`serving serve` with HTTP and gRPC, pinned to the server core (run.py's Server, which
    waits for /v2/health/ready, then for gRPC's ServerReady)."""

    def __init__(self, binary: Path, repository: Path):
        self.kind = "serving"
        self.port = free_port()
        self.grpc_port = free_port()
        while self.grpc_port == self.port:
            self.grpc_port = free_port()
        cmd = [str(binary), "serve", "--model-repository", str(repository), "--addr", f"127.0.0.1:{self.port}",
               "--grpc-addr", f"127.0.0.1:{self.grpc_port}", "--max-concurrency", "256"]
        self._start(cmd, dict(os.environ, RUST_LOG="warn"))

    def _wait_ready(self, limit: float = 60.0) -> float:
        super()._wait_ready(limit)
        return wait_for_grpc(self, self.grpc_port, "serving", limit, 0.01)


class PythonGrpcServer(StoppedOnFailure, Server):
    """benches/baselines/grpc_server.py under .venv's Python, pinned to the server core."""

    def __init__(self, repository: Path):
        self.kind = "python"
        self.port = self.grpc_port = free_port()
        cmd = [str(venv_python()), str(ROOT / "benches" / "baselines" / "grpc_server.py"),
               "--model-repository", str(repository), "--port", str(self.port)]
        self._start(cmd, dict(os.environ, OMP_NUM_THREADS="1", GRPC_VERBOSITY="ERROR"))

    def _wait_ready(self, limit: float = 60.0) -> float:
        return wait_for_grpc(self, self.port, "grpc_server.py", limit, 0.02)


def our_binary(args) -> Path:
    """The shipped binary run.py measures; with --skip-build and none built, target/release/serving."""
    if args.serving:
        binary = Path(args.serving)
    elif shipped_serving().exists():
        binary = shipped_serving()
    elif args.skip_build and (target_dir() / "release" / "serving").exists():
        binary = target_dir() / "release" / "serving"
        log(f"{shipped_serving()} is not built; measuring {binary} (the workspace build) instead")
    else:
        raise RuntimeError(f"no serving binary at {shipped_serving()}: run without --skip-build, or pass --serving PATH")
    if not binary.exists():
        raise RuntimeError(f"--serving {binary}: no such file")
    usage = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    if "--grpc-addr" not in usage:
        raise RuntimeError(f"{binary} has no --grpc-addr (built before the gRPC service?): rebuild it")
    return binary


# ---------------------------------------------------------------------------------------------
# Requests


def tensors(records: list[dict], manifest: dict) -> list[tuple[str, str, bytes]]:
    """Each input as tritonclient sends it: (name, datatype, raw little-endian contents);
    numbers as FP64 (a missing one NaN), text as BYTES with 4-byte lengths (missing is empty)."""
    out = []
    for spec in manifest["schema"]["features"]:
        values = [r[spec["name"]] for r in records]
        if spec["kind"] == "numeric":
            raw = struct.pack(f"<{len(values)}d", *(float("nan") if v is None else float(v) for v in values))
            out.append((spec["name"], "FP64", raw))
        else:
            encoded = [("" if v is None else str(v)).encode() for v in values]
            out.append((spec["name"], "BYTES", b"".join(struct.pack("<I", len(e)) + e for e in encoded)))
    return out


def grpc_message(name: str, n_rows: int, inputs: list[tuple[str, str, bytes]]) -> bytes:
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=name)
    for input_name, datatype, raw in inputs:
        request.inputs.add(name=input_name, datatype=datatype, shape=[n_rows])
        request.raw_input_contents.append(raw)
    return request.SerializeToString()


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: compression flag 0, 4-byte big-endian length."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def http_binary_body(n_rows: int, inputs: list[tuple[str, str, bytes]]) -> tuple[bytes, int]:
    """A v2 request with the binary tensor extension: the JSON header, then the raw tensors;
    returns the body and the header's length (`Inference-Header-Content-Length`)."""
    header = {
        "inputs": [{"name": n, "datatype": d, "shape": [n_rows], "parameters": {"binary_data_size": len(raw)}}
                   for n, d, raw in inputs],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b"".join(raw for _, _, raw in inputs), len(head)


def split_strings(raw: bytes) -> list[str]:
    values, pos = [], 0
    while pos < len(raw):
        (length,) = struct.unpack_from("<I", raw, pos)
        values.append(raw[pos + 4:pos + 4 + length].decode(errors="replace"))
        pos += 4 + length
    return values


def decoded(name: str, datatype: str, shape: list[int], raw: bytes, where: str) -> tuple:
    """(name, datatype, shape, values) of one raw output tensor."""
    import numpy as np

    count = int(np.prod(shape)) if shape else 1
    if datatype == "BYTES":
        values = split_strings(raw)
    elif datatype == "FP32":
        values = np.frombuffer(raw, dtype="<f4")
    else:
        raise RuntimeError(f"{where}: output '{name}' has datatype {datatype}, expected FP32 or BYTES")
    if len(values) != count:
        raise RuntimeError(f"{where}: output '{name}' holds {len(values)} values for shape {shape}")
    return name, datatype, list(shape), values


def call_grpc(port: int, message: bytes, where: str) -> bytes:
    """One ModelInfer call with grpcio on the raw message; the raw answer."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}", options=grpc_options()) as channel:
        method = channel.unary_unary(GRPC_PATH, request_serializer=None, response_deserializer=None)
        try:
            return method(message, timeout=10)
        except grpc.RpcError as error:
            raise RuntimeError(f"{where}: ModelInfer failed: {error.code()} {error.details()}") from None


def grpc_outputs(raw: bytes, where: str) -> list[tuple]:
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse.FromString(raw)
    if len(response.raw_output_contents) != len(response.outputs):
        raise RuntimeError(f"{where}: {len(response.outputs)} outputs but {len(response.raw_output_contents)} "
                           "raw_output_contents")
    return [decoded(o.name, o.datatype, list(o.shape), contents, where)
            for o, contents in zip(response.outputs, response.raw_output_contents)]


def call_http(port: int, path: str, body: bytes, header_length: int, where: str) -> tuple[bytes, list[tuple]]:
    """One v2 binary-extension request with http.client; the raw answer and its outputs."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream",
                                                       "Inference-Header-Content-Length": str(header_length)})
        response = conn.getresponse()
        data = response.read()
        length = response.getheader("Inference-Header-Content-Length")
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"{where}: HTTP {response.status}: {data[:300]!r}")
    if length is None:
        raise RuntimeError(f"{where}: no Inference-Header-Content-Length in the answer (binary outputs asked for)")
    header, rest = json.loads(data[:int(length)]), data[int(length):]
    outputs, pos = [], 0
    for o in header["outputs"]:
        size = o["parameters"]["binary_data_size"]
        outputs.append(decoded(o["name"], o["datatype"], o["shape"], rest[pos:pos + size], where))
        pos += size
    if pos != len(rest):
        raise RuntimeError(f"{where}: {len(rest) - pos} bytes after the binary outputs")
    return data, outputs


def check_agree(ours: list[tuple], theirs: list[tuple], where: str) -> None:
    """Same outputs (names, datatypes, shapes in order), labels equal, numbers within TOLERANCE."""
    import numpy as np

    layout = [o[:3] for o in ours]
    if [o[:3] for o in theirs] != layout:
        raise RuntimeError(f"{where}: outputs {[o[:3] for o in theirs]}, ours are {layout}")
    for (name, datatype, _, a), (_, _, _, b) in zip(ours, theirs):
        if datatype == "BYTES":
            if list(a) != list(b):
                raise RuntimeError(f"{where}: output '{name}' differs: {list(b)[:8]} against ours {list(a)[:8]}")
            continue
        a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        scale = np.maximum(np.abs(a64), np.abs(b64))
        bad = np.flatnonzero(np.abs(a64 - b64) > TOLERANCE * scale + 1e-30)
        if bad.size:
            i = bad[0]
            raise RuntimeError(f"{where}: output '{name}' differs at {bad.size} of {a64.size} values, "
                               f"first at {i}: {b64[i]!r} against ours {a64[i]!r} (tolerance {TOLERANCE} relative)")


# ---------------------------------------------------------------------------------------------
# Load


def h2load_shape(streams: int, protocol: str) -> tuple[int, int]:
    """(connections, streams per connection): gRPC multiplexes at most 8 streams on a connection,
    HTTP/1.1 has one request in flight per connection."""
    if protocol == "http":
        return streams, 1
    clients = max(1, streams // 8)
    return clients, streams // clients


def h2load_seconds(text: str) -> float:
    """A duration as h2load prints it: `5.00s`, `998.97ms` or `850.12us`."""
    for unit, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    raise ValueError(f"h2load duration {text!r} has no unit")


def parse_h2load(out: str) -> dict:
    result = {}
    for line in out.splitlines():
        words = line.replace(",", "").split()
        if line.startswith("finished in"):
            result["seconds"] = h2load_seconds(words[2])
            result["rps"] = float(words[3])
        elif line.startswith("requests:"):
            for value, key in zip(words[1::2], words[2::2]):
                result[key] = int(value)
        elif line.startswith("status codes:"):
            for value, key in zip(words[2::2], words[3::2]):
                result[f"status_{key}"] = int(value)
        elif line.startswith("traffic:"):
            # traffic: 1.21MB (1272938) total, 47.88KB (49029) headers (...), 748.88KB (766852) data
            result["data_bytes"] = int(words[words.index("data") - 1].strip("()"))
    missing = {"rps", "done", "succeeded", "failed", "errored", "timeout", "data_bytes"} - result.keys()
    if missing:
        raise RuntimeError(f"h2load's output lacks {sorted(missing)}:\n{out[-2000:]}")
    return result


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def h2load(port: int, path: str, body_file: Path, headers: list[str], protocol: str, streams: int,
           seconds: float, answer_bytes: int, where: str, pid: int) -> dict:
    """One h2load run; raises on any failed request or any answer not `answer_bytes` long. Also
    the CPU time the server (process `pid`) spent per answered request."""
    clients, per_client = h2load_shape(streams, protocol)
    with tempfile.TemporaryDirectory() as tmp:
        log_file = Path(tmp) / "requests.tsv"
        cmd = ["h2load", "-t1", f"-c{clients}", f"-m{per_client}", f"-D{max(1, round(seconds * 1000))}ms",
               "-d", str(body_file), "--log-file", str(log_file)]
        for header in headers:
            cmd += ["-H", header]
        if protocol == "http":
            cmd.append("--h1")
        cmd.append(f"http://127.0.0.1:{port}{path}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before = process_cpu_seconds(pid)
        try:
            done = subprocess.run(pinned(LOAD_CORE, cmd), capture_output=True, text=True, timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{where}: h2load did not finish within {seconds + 60:.0f} s") from None
        server_cpu = process_cpu_seconds(pid) - server_before
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"{where}: h2load exited {done.returncode}:\n{done.stderr[-2000:]}{done.stdout[-2000:]}")
        result = parse_h2load(done.stdout)
        latencies = []
        for line in log_file.read_text().splitlines():
            _, status, micros = line.split("\t")[:3]
            if status.startswith("2"):
                latencies.append(int(micros))
    bad = {k: result[k] for k in ("failed", "errored", "timeout") if result[k]}
    bad.update({k: v for k, v in result.items() if k.startswith("status_") and k != "status_2xx" and v})
    if result["succeeded"] != result["done"]:
        bad["not succeeded"] = result["done"] - result["succeeded"]
    if bad:
        raise RuntimeError(f"{where}: failed requests {bad}:\n{done.stdout[-1500:]}")
    if result["done"] == 0:
        raise RuntimeError(f"{where}: no request completed:\n{done.stdout[-1500:]}")
    # Every answer is `answer_bytes` of DATA; h2load may also count part of an answer still in
    # flight when the time is up (HTTP/1.1 does), never more than those requests' answers.
    expected = result["done"] * answer_bytes
    in_flight = max(0, result.get("started", result["done"]) - result["done"]) * answer_bytes
    if not expected <= result["data_bytes"] <= expected + in_flight:
        short = -(-(expected - result["data_bytes"]) // answer_bytes)
        raise RuntimeError(f"{where}: {result['data_bytes']:,} bytes of answers for {result['done']:,} requests "
                           f"answered with {answer_bytes} bytes each: "
                           + (f"at least {short:,} answers were errors or short (a gRPC error is HTTP 200 with a "
                              "grpc-status trailer and no message)" if short > 0 else "more than they can be"))
    latencies.sort()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "rps": result["rps"],
        "requests": result["done"],
        "p50_ms": latencies[len(latencies) // 2] / 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000,
        "load_cpu": cpu / result.get("seconds", seconds),  # share of h2load's core it kept busy
        "server_cpu_us": server_cpu * 1e6 / result["done"],  # the server's CPU time per answered request
        "clients": clients,
        "streams_per_client": per_client,
    }


def series(targets: dict, streams: int, seconds: float, runs: int, where: str) -> dict:
    """`runs` h2load runs against each target, alternating run by run (as run.py's load_series),
    after a warm-up run each; the medians."""
    for kind, target in targets.items():
        h2load(**target, streams=streams, seconds=min(1.0, seconds), where=f"{where} {kind} warm-up")
    measured = {kind: [] for kind in targets}
    for index in range(runs):
        for kind, target in targets.items():
            measured[kind].append(h2load(**target, streams=streams, seconds=seconds,
                                         where=f"{where} {kind} run {index + 1}"))
    return {kind: {"rps": median([r["rps"] for r in rs]), "p50_ms": median([r["p50_ms"] for r in rs]),
                   "p99_ms": median([r["p99_ms"] for r in rs]), "load_cpu": median([r["load_cpu"] for r in rs]),
                   "server_cpu_us": median([r["server_cpu_us"] for r in rs]),
                   "clients": rs[0]["clients"], "streams_per_client": rs[0]["streams_per_client"], "runs": rs}
            for kind, rs in measured.items()}


def bench(ctx: dict, binary: Path, args) -> dict:
    repository = ctx["repository"]
    results = {"binary": str(binary), "cases": {}}
    with (tempfile.TemporaryDirectory() as tmp, OurServer(binary, repository) as ours,
          PythonGrpcServer(repository) as python):
        for name in MODELS:
            manifest = json.loads((latest_version(repository / name) / "manifest.json").read_text())
            rows = complete_rows(data_rows(name), manifest)
            for n_rows in BATCHES:
                if len(rows) < n_rows:
                    raise RuntimeError(f"data/{name}.csv has {len(rows)} complete rows, fewer than {n_rows}")
                records = [record(r, manifest) for r in rows[:n_rows]]
                inputs = tensors(records, manifest)
                message = grpc_message(name, n_rows, inputs)
                grpc_file = Path(tmp) / f"{name}-{n_rows}.grpc"
                grpc_file.write_bytes(grpc_frame(message))
                http_body, header_length = http_binary_body(n_rows, inputs)
                http_file = Path(tmp) / f"{name}-{n_rows}.http"
                http_file.write_bytes(http_body)
                http_path = f"/v2/models/{name}/infer"
                where = f"{name} x{n_rows}"

                # Once per server and body: the call is OK and the answers agree with ours.
                our_raw = call_grpc(ours.grpc_port, message, f"{where}: serving gRPC")
                our_outputs = grpc_outputs(our_raw, f"{where}: serving gRPC")
                python_raw = call_grpc(python.grpc_port, message, f"{where}: Python gRPC")
                check_agree(our_outputs, grpc_outputs(python_raw, f"{where}: Python gRPC"), f"{where}: Python gRPC")
                http_raw, http_outputs = call_http(ours.port, http_path, http_body, header_length,
                                                   f"{where}: serving HTTP v2")
                check_agree(our_outputs, http_outputs, f"{where}: serving HTTP v2")

                grpc_headers = ["content-type: application/grpc", "te: trailers"]
                targets = {
                    "grpc": dict(port=ours.grpc_port, path=GRPC_PATH, body_file=grpc_file, headers=grpc_headers,
                                 protocol="grpc", answer_bytes=len(grpc_frame(our_raw)), pid=ours.process.pid),
                    "http": dict(port=ours.port, path=http_path, body_file=http_file, protocol="http",
                                 pid=ours.process.pid,
                                 headers=["content-type: application/octet-stream",
                                          f"inference-header-content-length: {header_length}"],
                                 answer_bytes=len(http_raw)),
                    "python": dict(port=python.grpc_port, path=GRPC_PATH, body_file=grpc_file, headers=grpc_headers,
                                   protocol="grpc", answer_bytes=len(grpc_frame(python_raw)),
                                   pid=python.process.pid),
                }
                for streams in STREAMS:
                    key = f"{name}/rows{n_rows}/s{streams}"
                    log(f"grpc {key}")
                    case = series(targets, streams, args.seconds, args.runs, key)
                    case["request_bytes"] = {"grpc": len(grpc_frame(message)), "http": len(http_body)}
                    results["cases"][key] = case
    results["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["machine"] = machine()
    return results


# ---------------------------------------------------------------------------------------------
# Report


def display_path(path: Path) -> Path:
    """`path` relative to the checkout, else to the target directory (as `<target>/...`)."""
    for base, shown in ((ROOT, Path()), (target_dir(), Path("<target>"))):
        try:
            return shown / path.relative_to(base)
        except ValueError:
            pass
    return path


def report(results: dict, args) -> str:
    binary = Path(results["binary"])
    shown = display_path(binary)
    note = "" if binary == shipped_serving() else (
        f" (not the shipped `{display_path(shipped_serving())}`, which was not built)")
    lines = [
        f"Measured {results['measured']} on {results['machine']}; `{args.command}`, "
        f"binary `{shown}`{note}. Both servers pinned to core {SERVER_CORE}, h2load (one thread) to core "
        f"{LOAD_CORE}; each figure the median of {args.runs} runs of {args.seconds:g} s after a warm-up run, "
        "alternating run by run between ours over gRPC, ours over HTTP v2 and the Python peer. gRPC: "
        "C = max(1, S/8) h2c connections of S/C streams each; HTTP v2: `h2load --h1`, S connections, one "
        "request in flight each. The ratio is our gRPC req/s over the Python peer's, rounded down (budget: ≥ 10x); "
        "latency is h2load's, per request, from its log; server CPU is the server process's user and system time "
        "(/proc) over the run, divided by the requests answered (ours serves gRPC and HTTP v2 from one process).", ""]
    marked = False
    for name in MODELS:
        for n_rows in BATCHES:
            first = results["cases"][f"{name}/rows{n_rows}/s{STREAMS[0]}"]
            task = "classification" if name == "penguins" else "regression"
            lines += [f"### {name} ({task}), {n_rows} record{'s' if n_rows > 1 else ''} per request "
                      f"(gRPC message {first['request_bytes']['grpc']:,} B, HTTP v2 body "
                      f"{first['request_bytes']['http']:,} B)", "",
                      "| streams | gRPC conns x streams | ours gRPC req/s | ours HTTP v2 req/s | Python gRPC req/s | "
                      "ours gRPC / Python | budget | p50 / p99 ms: ours gRPC | ours HTTP v2 | Python gRPC | "
                      "server CPU µs per request: ours gRPC / ours HTTP v2 / Python |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for streams in STREAMS:
                case = results["cases"][f"{name}/rows{n_rows}/s{streams}"]
                g, h, p = (case[k] for k in TARGETS)
                ratio = g["rps"] / p["rps"]
                shown = math.floor(ratio * 10) / 10  # rounded down: never "10.0x" beside a miss
                cells = []
                for kind in TARGETS:
                    busy = case[kind]["load_cpu"] >= 0.9
                    marked |= busy
                    cells.append(f"{case[kind]['rps']:,.0f}{' †' if busy else ''}")
                lat = [f"{case[k]['p50_ms']:.2f} / {case[k]['p99_ms']:.2f}" for k in TARGETS]
                cpu = " / ".join(f"{case[k]['server_cpu_us']:.0f}" for k in TARGETS)
                lines.append(f"| {streams} | {g['clients']} x {g['streams_per_client']} | {' | '.join(cells)} | "
                             f"{shown:.1f}x | {verdict(ratio >= BUDGET)} | {' | '.join(lat)} | {cpu} |")
            lines.append("")
    if marked:
        lines += ["† h2load kept its core at least 90% busy in that run: the figure may be the load generator's "
                  "limit rather than the server's.", ""]
    return "\n".join(lines).rstrip() + "\n"


INTRO = f"""Ours over gRPC (`serving serve --grpc-addr`, `inference.GRPCInferenceService`) against the
gRPC server a latency-minded Python user writes, `benches/baselines/grpc_server.py` (grpcio's
`grpc.server` with a pool of 4 threads, `grpc.aio` having measured slower here; Triton's
generated stubs from tritonclient; onnxruntime with one intra-op and one inter-op thread on the
artifact's `model.onnx`; it decodes `raw_input_contents`, runs the model and encodes
`raw_output_contents` like ours), and against our own HTTP v2 endpoint with the binary tensor
extension, all three under the same load generator, `h2load` (Debian's `nghttp2-client`).
Requests are what tritonclient sends: numeric inputs FP64 and text BYTES in
`raw_input_contents`, 1 or 64 complete rows of the bundled data. Before a case is measured each
target answers once and must agree with ours (labels equal, numbers within 1e-4 relative); a
run with any failed request, any non-2xx status or any answer of the wrong size (a gRPC error
is HTTP 200 with a `grpc-status` trailer and no message) aborts the harness.

```sh
{COMMAND}   # about 10 minutes on 2 cores
python3 benches/grpc_bench.py --runs 1 --seconds 2 --skip-build   # checks the harness
```
"""


def write_benchmarks(markdown: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    replaced = replace_block(text, MARK_BEGIN, MARK_END, markdown)
    if replaced is not None:
        text = replaced
    else:
        section = f"{SECTION}\n\n{INTRO}\n{MARK_BEGIN}\n{markdown}{MARK_END}\n\n"
        # After the HTTP results (the `results` block of benches/run.py and the notes under it):
        # before the next section heading.
        at = text.find(RESULTS_END)
        at = text.find("\n## ", at) if at >= 0 else -1
        if at >= 0:
            text = text[:at + 1] + section + text[at + 1:]
        else:
            text = text.rstrip() + "\n\n" + section
    path.write_text(text)


# ---------------------------------------------------------------------------------------------


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == (ROOT / ".venv").resolve()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per h2load run (default 5)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure, alternating servers (default 3)")
    parser.add_argument("--write-benchmarks", action="store_true",
                        help="write the tables into BENCHMARKS.md (between the grpc markers); without it, print them")
    parser.add_argument("--skip-build", action="store_true", help="use the binaries already built")
    parser.add_argument("--retrain", action="store_true", help="train the bundled models again")
    parser.add_argument("--serving", help="the serving binary to measure (default: run.py's shipped one)")
    parser.add_argument("--prepared", action="store_true", help=argparse.SUPPRESS)  # set by the re-run in .venv
    args = parser.parse_args()
    if args.seconds <= 0 or args.runs < 1:
        parser.error("--seconds must be positive and --runs at least 1")
    args.command = COMMAND if args.write_benchmarks else "python3 benches/grpc_bench.py"

    if not args.prepared:
        if not shutil.which("h2load"):
            apt_install("nghttp2-client")
        prepare(SimpleNamespace(only=["grpc"], skip_build=args.skip_build, retrain=args.retrain))
        if not in_venv():
            # grpcio and tritonclient live in .venv: run again there, past the preparation.
            python = str(venv_python())
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:], "--prepared"])
    if not shutil.which("h2load"):
        raise SystemExit("h2load is not installed (Debian package nghttp2-client)")
    ctx = {"repository": BENCH_DIR / "models"}

    # SIGTERM unwinds like Ctrl-C, so every server started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = our_binary(args)
    results = bench(ctx, binary, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    markdown = report(results, args)
    print(markdown)
    if args.write_benchmarks:
        write_benchmarks(markdown)
        log("wrote BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as error:
        print(f"benches/grpc_bench.py: {error}", file=sys.stderr)
        sys.exit(1)

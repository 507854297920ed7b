#!/usr/bin/env python3
"""Slow and stalled clients against `serving`: does the server shed them on time, does a normal
client still get fast answers meanwhile, and does memory come back afterwards?

What it measures
----------------
The script starts the server itself (`serving serve ... --header-timeout-seconds H
--body-timeout-seconds B --keep-alive-seconds K --max-connections N`), discovers a model,
checks one valid one-row v2 inference request gets 200, sends 20 warm-up requests and reads the
server's idle RSS (VmRSS of /proc/PID/status). Then:

- phase "attack": it opens `--slow-header` connections that send the first lines of a request
  head (`POST /v2/models/NAME/infer HTTP/1.1`, `Host: x`) and then one more header byte every
  second, never finishing the head (slowloris), and `--stalled-body` connections that send a
  full head announcing `Content-Length: 1048576`, 64 KiB of body, and then nothing. For each
  connection it records when it was opened and when the server closed it (EOF or reset), and
  compares the time from open (slow header) or from the last byte sent (stalled body) to the
  close with the configured timeout. Meanwhile a normal client (its own process, so that the
  attacking threads cannot hold it up on Python's GIL) sends the valid request back to back on
  one keep-alive connection and records every latency, and the server's RSS is sampled every
  0.5 s. Attacking connections still open max(H, B) + 10 s after the last one was opened are
  closed by the script and counted as "not closed by server";
- phase "after": with every attacking socket closed, RSS is sampled every second for 60 s.

It prints a summary (figures for BENCHMARKS.md), optionally writes every figure (and every
attacking connection's times) to a JSON file, and ends with one line, PASS or FAIL, against:
normal-client p99 < 10 ms, max RSS during the attack < 300 MiB, every attacking connection
closed by the server within its timeout + 2 s, RSS back within 2x idle within 60 s, and zero
non-200 (or failed) normal requests. Exit status 0 on PASS, 1 on FAIL.

How to run
----------
    python3 benches/attack.py --serving target/release/serving \\
        --model-repository target/bench/models [--model penguins] [--json target/bench/attack.json]

Options (defaults): --slow-header 2000, --stalled-body 200, --header-timeout 10,
--body-timeout 10, --keep-alive 10 (seconds), --port 0 (a free port), --after-seconds 60,
--time-limit 300 (the whole run aborts with FAIL after it).

The script raises its own RLIMIT_NOFILE soft limit to the hard limit (the server inherits it);
if that is too low for the attack plus 200 spare descriptors, the attack counts are scaled down
and the summary says so. With two CPUs or more the server is pinned to CPU 0 and this script
(attackers and normal client) to CPU 1.

Safety: every connection goes to 127.0.0.1, to the server this script starts, and nowhere else;
every phase is bounded in time, the whole run is bounded by --time-limit, and the server is
stopped (SIGTERM, then SIGKILL after 10 s) however the run ends. Standard library only, Python
3.11+, Linux (/proc, sched_setaffinity).
"""

from __future__ import annotations

import argparse
import errno
import heapq
import http.client
import json
import math
import os
import resource
import select
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections import Counter

HOST = "127.0.0.1"

# Targets.
TARGET_P99_MS = 10.0
TARGET_MAX_RSS_MIB = 300.0
CLOSE_GRACE_S = 2.0
RSS_RECOVERY_FACTOR = 2.0

# Attack shape.
STALLED_CONTENT_LENGTH = 1_048_576
STALLED_BODY_SENT = 65_536
DRIP_PREFIX = b"X-Slowloris: "  # then b"a" forever: the header line never ends
DRIP_INTERVAL_S = 1.0
CONNECT_TIMEOUT_S = 10.0
MAX_CONNECTING_PER_WORKER = 128
CONNS_PER_WORKER = 1000
MAX_WORKERS = 4
RESPONSE_KEEP_BYTES = 512

# Harness.
FD_RESERVE = 200
READY_TIMEOUT_S = 30.0
WARMUP_REQUESTS = 20
RSS_ATTACK_INTERVAL_S = 0.5
CLOSE_WAIT_EXTRA_S = 10.0
STOP_GRACE_S = 10.0
NUMERIC_INTS = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
NUMERIC_FLOATS = {"FP16", "FP32", "FP64", "BF16"}


def log(message: str) -> None:
    print(f"[attack] {message}", file=sys.stderr, flush=True)


class Abort(Exception):
    """The run cannot go on (hard time limit, a signal, or a setup step that failed)."""


# ---------------------------------------------------------------------------------------------
# Small helpers


def read_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def mib(kib: float | None) -> float | None:
    return None if kib is None else round(kib / 1024.0, 2)


def fmt_mib(kib: float | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024.0:.1f} MiB"


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def spread(values: list[float]) -> dict:
    if not values:
        return {"count": 0, "min": None, "median": None, "p99": None, "max": None}
    s = sorted(values)
    return {
        "count": len(s),
        "min": round(s[0], 4),
        "median": round(statistics.median(s), 4),
        "p99": round(percentile(s, 99), 4),
        "max": round(s[-1], 4),
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 5.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def choose_cpus() -> tuple[int | None, int | None]:
    """(server CPU, script CPU): 0 and 1 when allowed, else the two lowest allowed; none with < 2."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(allowed) < 2:
        return None, None
    if 0 in allowed and 1 in allowed:
        return 0, 1
    return allowed[0], allowed[1]


def raise_nofile() -> tuple[int, int, int]:
    """Raises the RLIMIT_NOFILE soft limit to the hard limit; returns (before, soft, hard)."""
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
                target = int(f.read().strip())
        except (OSError, ValueError):
            target = 1 << 20
    if target > before:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as e:
            log(f"could not raise RLIMIT_NOFILE to {target}: {e}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return before, soft, hard


def status_code(response: bytes) -> str:
    """'408' from b'HTTP/1.1 408 Request Timeout...', 'none' without a response, '?' if garbled."""
    if not response:
        return "none"
    first = response.split(b"\r\n", 1)[0].split()
    if len(first) >= 2 and first[0].startswith(b"HTTP/") and first[1].isdigit():
        return first[1].decode()
    return "?"


# ---------------------------------------------------------------------------------------------
# The attacking connections: a few threads, each with one selector over many sockets


class Conn:
    __slots__ = (
        "kind", "gidx", "pos", "t_sched", "sock", "state", "want_write", "t_connect", "t_open",
        "t_last_sent", "t_closed", "closed_by", "how", "pending", "sent", "drip", "received",
        "response", "error",
    )

    def __init__(self, kind: str, gidx: int, t_sched: float):
        self.kind = kind  # "slow" (slow header) or "stalled" (stalled body)
        self.gidx = gidx
        self.pos = -1  # index in its worker's list
        self.t_sched = t_sched
        self.sock: socket.socket | None = None
        self.state = "new"  # new, connecting, open, closed, failed
        self.want_write = False
        self.t_connect: float | None = None
        self.t_open: float | None = None
        self.t_last_sent: float | None = None
        self.t_closed: float | None = None
        self.closed_by: str | None = None  # "server" or "script"
        self.how: str | None = None
        self.pending = memoryview(b"")
        self.sent = 0
        self.drip = 0
        self.received = 0
        self.response = b""
        self.error: str | None = None


class AttackWorker(threading.Thread):
    """Opens its connections on schedule, feeds them (one header byte a second for the slow ones,
    head plus 64 KiB once for the stalled ones), and watches for the server closing them. Returns
    once every connection is closed or failed, or when `halt` is set (then it closes the rest
    itself). Nothing outside this thread touches its sockets."""

    def __init__(self, name: str, conns: list[Conn], port: int, payloads: dict[str, bytes]):
        super().__init__(name=name, daemon=True)
        self.conns = conns
        for i, c in enumerate(conns):
            c.pos = i
        self.port = port
        self.payloads = payloads
        self.sel = selectors.DefaultSelector()
        self.halt = threading.Event()
        self.opened = threading.Event()  # every connection has been opened (or failed)
        self.live = 0
        self.error: str | None = None

    # -- bookkeeping

    def _close(self, c: Conn, by: str, how: str) -> None:
        if c.state != "open":
            return
        c.t_closed = time.monotonic()
        self._drop_socket(c)
        c.state = "closed"
        c.closed_by = by
        c.how = how
        self.live -= 1

    def _fail(self, c: Conn, why: str) -> None:
        self._drop_socket(c)
        c.state = "failed"
        c.error = why

    def _drop_socket(self, c: Conn) -> None:
        if c.sock is None:
            return
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        try:
            c.sock.close()
        except OSError:
            pass
        c.sock = None

    def _want(self, c: Conn, write: bool) -> None:
        if write != c.want_write and c.sock is not None:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
            self.sel.modify(c.sock, events, c)
            c.want_write = write

    # -- socket events

    def _connect(self, c: Conn, connecting: set) -> None:
        c.t_connect = time.monotonic()
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:
            c.state = "failed"
            c.error = f"socket(): {e.strerror or e}"
            return
        c.sock = s
        s.setblocking(False)
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        err = s.connect_ex((HOST, self.port))
        if err not in (0, errno.EINPROGRESS):
            self._fail(c, f"connect: {os.strerror(err)}")
            return
        c.state = "connecting"
        self.sel.register(s, selectors.EVENT_WRITE, c)
        connecting.add(c)

    def _connected(self, c: Conn, ticks: list) -> None:
        assert c.sock is not None
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(c, f"connect: {os.strerror(err)}")
            return
        c.state = "open"
        c.t_open = time.monotonic()
        self.live += 1
        self.sel.modify(c.sock, selectors.EVENT_READ, c)
        c.want_write = False
        c.pending = memoryview(self.payloads[c.kind])
        self._send(c)
        if c.kind == "slow" and c.state == "open":
            heapq.heappush(ticks, (c.t_open + DRIP_INTERVAL_S, c.pos))

    def _send(self, c: Conn) -> None:
        while c.pending:
            try:
                n = c.sock.send(c.pending)  # type: ignore[union-attr]
            except BlockingIOError:
                break
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                self._close(c, "server", "reset on send")
                return
            except OSError as e:
                self._close(c, "server", f"send error: {e.strerror or e}")
                return
            c.sent += n
            c.pending = c.pending[n:]
        if c.pending:
            self._want(c, True)
        else:
            c.t_last_sent = time.monotonic()
            self._want(c, False)

    def _recv(self, c: Conn) -> None:
        try:
            data = c.sock.recv(65536)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except (ConnectionResetError, ConnectionAbortedError):
            self._close(c, "server", "reset")
            return
        except OSError as e:
            self._close(c, "server", f"recv error: {e.strerror or e}")
            return
        if not data:
            self._close(c, "server", "eof")
            return
        c.received += len(data)
        if len(c.response) < RESPONSE_KEEP_BYTES:
            c.response += data[: RESPONSE_KEEP_BYTES - len(c.response)]

    def _drip_byte(self, c: Conn) -> bytes:
        i = c.drip
        c.drip += 1
        return DRIP_PREFIX[i : i + 1] if i < len(DRIP_PREFIX) else b"a"

    # -- the loop

    def run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # reported by the main thread
            self.error = f"{type(e).__name__}: {e}"
        finally:
            for c in self.conns:
                if c.state == "open":
                    self._close(c, "script", "closed by script")
                elif c.state == "connecting":
                    self._fail(c, "still connecting when the script stopped")
            try:
                self.sel.close()
            except OSError:
                pass
            self.opened.set()

    def _loop(self) -> None:
        conns = self.conns
        n = len(conns)
        nxt = 0
        connecting: set[Conn] = set()
        ticks: list[tuple[float, int]] = []
        while not self.halt.is_set():
            now = time.monotonic()
            while nxt < n and conns[nxt].t_sched <= now and len(connecting) < MAX_CONNECTING_PER_WORKER:
                self._connect(conns[nxt], connecting)
                nxt += 1
            if connecting:
                for c in [c for c in connecting if now - c.t_connect > CONNECT_TIMEOUT_S]:
                    connecting.discard(c)
                    self._fail(c, f"connect timed out after {CONNECT_TIMEOUT_S:.0f} s")
            while ticks and ticks[0][0] <= now:
                due, pos = heapq.heappop(ticks)
                c = conns[pos]
                if c.state != "open":
                    continue
                if not c.pending:
                    c.pending = memoryview(self._drip_byte(c))
                    self._send(c)
                if c.state == "open":
                    nxt_due = due + DRIP_INTERVAL_S
                    heapq.heappush(ticks, (nxt_due if nxt_due > now else now + DRIP_INTERVAL_S, pos))
            if not self.opened.is_set() and nxt >= n and not connecting:
                self.opened.set()
            if self.opened.is_set() and self.live == 0:
                return
            wake = now + 0.25
            if nxt < n:
                wake = min(wake, conns[nxt].t_sched)
            if ticks:
                wake = min(wake, ticks[0][0])
            timeout = max(0.0, wake - time.monotonic())
            if not self.sel.get_map():
                self.halt.wait(timeout)
                continue
            for key, mask in self.sel.select(timeout):
                c = key.data
                if c.state == "connecting":
                    connecting.discard(c)
                    self._connected(c, ticks)
                    continue
                if c.state != "open":
                    continue
                if mask & selectors.EVENT_READ:
                    self._recv(c)
                if c.state == "open" and mask & selectors.EVENT_WRITE:
                    self._send(c)


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float, t0: float):
        super().__init__(name="rss", daemon=True)
        self.pid = pid
        self.interval = interval
        self.t0 = t0
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        next_t = time.monotonic()
        while not self._halt.is_set():
            kib = read_rss_kib(self.pid)
            if kib is not None:
                self.samples.append((round(time.monotonic() - self.t0, 3), kib))
            next_t += self.interval
            self._halt.wait(max(0.0, next_t - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


# ---------------------------------------------------------------------------------------------
# The normal client: its own process (`--normal-client CONFIG`), so that the attacking threads
# cannot delay it on the GIL. It connects, checks one request, prints "ready", waits for "go" on
# stdin, sends the request back to back for `duration` seconds and prints one JSON line.


def normal_client_main(config: str) -> int:
    cfg = json.loads(config)
    duration = float(cfg["duration_max"])
    signal.alarm(int(duration + 60))
    port = int(cfg["port"])
    path = cfg["path"]
    body = cfg["body"].encode()
    timeout = float(cfg["timeout"])
    headers = {"Content-Type": "application/json"}

    def connect() -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    conn = connect()
    conn.request("POST", path, body=body, headers=headers)
    first = conn.getresponse()
    first.read()
    print("ready" if first.status == 200 else f"status {first.status}", flush=True)
    line = sys.stdin.readline().split()
    if not line or line[0] != "go":
        return 0
    duration = min(duration, float(line[1])) if len(line) > 1 else duration

    latencies: list[float] = []
    statuses: Counter = Counter()
    errors = 0
    error_samples: list[str] = []
    reconnects = 0
    worst_per_second: dict[int, float] = {}
    t_start = time.monotonic()
    t_end = t_start + duration
    while time.monotonic() < t_end:
        t1 = time.perf_counter()
        try:
            if conn is None:
                conn = connect()
                reconnects += 1
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            ms = (time.perf_counter() - t1) * 1000.0
            latencies.append(ms)
            statuses[response.status] += 1
            second = int(time.monotonic() - t_start)
            worst_per_second[second] = max(worst_per_second.get(second, 0.0), ms)
            if response.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            errors += 1
            if len(error_samples) < 5:
                error_samples.append(f"{type(e).__name__}: {e}")
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.01)
    elapsed = time.monotonic() - t_start
    if conn is not None:
        conn.close()
    s = sorted(latencies)
    result = {
        "duration_s": round(elapsed, 3),
        "requests": len(s),
        "p50_ms": percentile(s, 50),
        "p90_ms": percentile(s, 90),
        "p99_ms": percentile(s, 99),
        "p999_ms": percentile(s, 99.9),
        "max_ms": s[-1] if s else None,
        "mean_ms": statistics.fmean(s) if s else None,
        "non_200": sum(v for k, v in statuses.items() if k != 200),
        "errors": errors,
        "error_samples": error_samples,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "reconnects": reconnects,
        "worst_ms_per_second": [round(worst_per_second.get(i, 0.0), 3) for i in range(int(math.ceil(elapsed)))],
    }
    for key in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms"):
        if result[key] is not None:
            result[key] = round(result[key], 4)
    print(json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# The run


class Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.report: dict = {"target": {
            "normal_p99_ms_below": TARGET_P99_MS,
            "max_rss_mib_below": TARGET_MAX_RSS_MIB,
            "close_grace_s": CLOSE_GRACE_S,
            "rss_recovery_factor": RSS_RECOVERY_FACTOR,
        }}
        self.notes: list[str] = []
        self.server: subprocess.Popen | None = None
        self.server_log = None
        self.client: subprocess.Popen | None = None
        self.workers: list[AttackWorker] = []
        self.sampler: RssSampler | None = None

    # -- setup

    def server_log_tail(self, limit: int = 3000) -> str:
        if self.server_log is None:
            return ""
        try:
            self.server_log.flush()
            self.server_log.seek(0)
            data = self.server_log.read()
        except (OSError, ValueError):
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def start_server(self, port: int, server_cpu: int | None, max_connections: int) -> None:
        a = self.args
        cmd = [
            a.serving, "serve",
            "--model-repository", a.model_repository,
            "--addr", f"{HOST}:{port}",
            "--grpc-addr", "off",
            "--header-timeout-seconds", str(a.header_timeout),
            "--body-timeout-seconds", str(a.body_timeout),
            "--keep-alive-seconds", str(a.keep_alive),
            "--max-connections", str(max_connections),
        ]
        self.report["server_command"] = cmd
        log("starting: " + " ".join(cmd))
        self.server_log = tempfile.TemporaryFile(prefix="attack-serving-", suffix=".log")
        preexec = None
        if server_cpu is not None:
            def preexec() -> None:
                os.sched_setaffinity(0, {server_cpu})
        try:
            self.server = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=self.server_log, stderr=subprocess.STDOUT,
                preexec_fn=preexec,
            )
        except OSError as e:
            raise Abort(f"cannot start {a.serving}: {e}") from e

    def wait_ready(self, port: int) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < READY_TIMEOUT_S:
            assert self.server is not None
            if self.server.poll() is not None:
                raise Abort(f"the server exited with status {self.server.returncode} before it was ready:\n"
                            + self.server_log_tail())
            try:
                status, _ = http_request(port, "GET", "/v2/health/ready", timeout=1.0)
                if status == 200:
                    return time.monotonic() - t0
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        raise Abort(f"the server was not ready within {READY_TIMEOUT_S:.0f} s:\n" + self.server_log_tail())

    def discover(self, port: int) -> tuple[str, bytes, str]:
        status, raw = http_request(port, "GET", "/v2/models")
        if status != 200:
            raise Abort(f"GET /v2/models: {status} {raw[:300]!r}")
        models = json.loads(raw).get("models") or []
        names = [m["name"] for m in models]
        if not names:
            raise Abort("GET /v2/models lists no model")
        name = self.args.model or names[0]
        if name not in names:
            raise Abort(f"model {name!r} is not served (served: {', '.join(names)})")
        quoted = urllib.parse.quote(name, safe="")
        status, raw = http_request(port, "GET", f"/v2/models/{quoted}")
        if status != 200:
            raise Abort(f"GET /v2/models/{quoted}: {status} {raw[:300]!r}")
        inputs = []
        for spec in json.loads(raw)["inputs"]:
            datatype = spec["datatype"]
            if datatype == "BYTES":
                value: object = ""  # an empty string is a missing category
            elif datatype in NUMERIC_FLOATS:
                value = 1.0
            elif datatype in NUMERIC_INTS:
                value = 1
            elif datatype == "BOOL":
                value = True
            else:
                raise Abort(f"input {spec['name']!r} has datatype {datatype}, which this script cannot fill")
            inputs.append({"name": spec["name"], "datatype": datatype, "shape": [1], "data": [value]})
        body = json.dumps({"inputs": inputs}, separators=(",", ":")).encode()
        path = f"/v2/models/{quoted}/infer"
        status, raw = http_request(port, "POST", path, body)
        if status != 200:
            raise Abort(f"the valid request got {status}, not 200: {raw[:500]!r}\nrequest: {body[:500]!r}")
        return name, body, path

    def warm_up(self, port: int, path: str, body: bytes) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=5.0)
        try:
            for _ in range(WARMUP_REQUESTS):
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise Abort(f"warm-up request got {response.status}")
        finally:
            conn.close()

    def start_client(self, port: int, path: str, body: bytes, duration_max: float) -> None:
        config = json.dumps({"port": port, "path": path, "body": body.decode(), "timeout": 5.0,
                             "duration_max": duration_max})
        self.client = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--normal-client", config],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
        )
        assert self.client.stdout is not None
        ready, _, _ = select.select([self.client.stdout], [], [], 15.0)
        line = self.client.stdout.readline().decode().strip() if ready else ""
        if line != "ready":
            raise Abort(f"the normal client did not get ready (said {line!r})")

    def go_client(self, duration: float) -> None:
        assert self.client is not None and self.client.stdin is not None
        self.client.stdin.write(f"go {duration:.3f}\n".encode())
        self.client.stdin.flush()

    def collect_client(self, timeout: float) -> dict:
        assert self.client is not None
        try:
            out, _ = self.client.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.client.kill()
            self.client.communicate()
            raise Abort("the normal client did not finish in time")
        lines = out.decode().strip().splitlines()
        if self.client.returncode != 0 or not lines:
            raise Abort(f"the normal client failed (status {self.client.returncode})")
        return json.loads(lines[-1])

    # -- cleanup

    def cleanup(self) -> None:
        for w in self.workers:
            w.halt.set()
        for w in self.workers:
            w.join(5)
        if self.sampler is not None:
            self.sampler.stop()
        if self.client is not None and self.client.poll() is None:
            self.client.kill()
            try:
                self.client.communicate(timeout=5)
            except (subprocess.TimeoutExpired, OSError, ValueError):
                pass
        self.stop_server()

    def stop_server(self) -> None:
        proc = self.server
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log(f"the server did not stop within {STOP_GRACE_S:.0f} s of SIGTERM; SIGKILL")
            proc.kill()
            proc.wait(5)

    # -- the benchmark

    def execute(self) -> None:
        a = self.args
        rep = self.report

        server_cpu, script_cpu = choose_cpus()
        if script_cpu is not None:
            os.sched_setaffinity(0, {script_cpu})
        rep["pinning"] = {"server_cpu": server_cpu, "script_cpu": script_cpu}
        if server_cpu is None:
            self.notes.append("fewer than 2 CPUs allowed: server and script are not pinned")

        before, soft, hard = raise_nofile()
        slow_n, stalled_n = a.slow_header, a.stalled_body
        need = slow_n + stalled_n
        rep["rlimit_nofile"] = {"soft_before": before, "soft": soft,
                                "hard": "unlimited" if hard == resource.RLIM_INFINITY else hard}
        if need and soft < need + FD_RESERVE:
            avail = max(0, soft - FD_RESERVE)
            slow_n = slow_n * avail // need
            stalled_n = stalled_n * avail // need
            self.notes.append(
                f"RLIMIT_NOFILE allows {soft} descriptors: attack reduced from {a.slow_header} slow-header + "
                f"{a.stalled_body} stalled-body to {slow_n} + {stalled_n} connections ({FD_RESERVE} kept spare)")
            log(self.notes[-1])
        max_connections = slow_n + stalled_n + 500
        port = a.port or free_port()
        rep["config"] = {
            "slow_header": slow_n, "stalled_body": stalled_n,
            "slow_header_requested": a.slow_header, "stalled_body_requested": a.stalled_body,
            "header_timeout_s": a.header_timeout, "body_timeout_s": a.body_timeout,
            "keep_alive_s": a.keep_alive, "max_connections": max_connections, "port": port,
            "stalled_content_length": STALLED_CONTENT_LENGTH, "stalled_body_sent": STALLED_BODY_SENT,
            "drip_interval_s": DRIP_INTERVAL_S, "after_seconds": a.after_seconds, "time_limit_s": a.time_limit,
        }

        self.start_server(port, server_cpu, max_connections)
        assert self.server is not None
        pid = self.server.pid
        rep["ready_s"] = round(self.wait_ready(port), 3)
        name, body, path = self.discover(port)
        rep["model"] = name
        rep["request"] = body.decode()
        log(f"model {name}; request {len(body)} bytes gets 200")

        self.warm_up(port, path, body)
        time.sleep(0.5)
        idle_kib = read_rss_kib(pid)
        if idle_kib is None:
            raise Abort(f"cannot read VmRSS of the server (pid {pid})")
        rep["idle_rss_mib"] = mib(idle_kib)
        log(f"idle RSS {fmt_mib(idle_kib)}")

        # The normal client connects now, before the attack, and starts on "go".
        self.start_client(port, path, body, 20.0)

        # -- phase "attack"
        model_path = path.encode()
        payloads = {
            "slow": b"POST " + model_path + b" HTTP/1.1\r\nHost: x\r\n",
            "stalled": (b"POST " + model_path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {STALLED_CONTENT_LENGTH}\r\n\r\n".encode()
                        + (b'{"inputs":[' + b" " * STALLED_BODY_SENT)[:STALLED_BODY_SENT]),
        }
        total = slow_n + stalled_n
        ramp_s = min(2.0, max(0.5, total / 2000.0))  # spreads the opens, hence the drip bytes, over ~1 s
        t0 = time.monotonic() + 0.05
        order = sorted([(i / max(1, slow_n), "slow") for i in range(slow_n)]
                       + [(j / max(1, stalled_n), "stalled") for j in range(stalled_n)])
        conns = [Conn(kind, g, t0 + frac * ramp_s) for g, (frac, kind) in enumerate(order)]
        n_workers = max(1, min(MAX_WORKERS, math.ceil(total / CONNS_PER_WORKER))) if total else 0
        shares: list[list[Conn]] = [conns[w::n_workers] for w in range(n_workers)]
        self.sampler = RssSampler(pid, RSS_ATTACK_INTERVAL_S, t0)
        self.sampler.start()
        self.workers = [AttackWorker(f"attack-{w}", share, port, payloads) for w, share in enumerate(shares)]
        log(f"attack: opening {slow_n} slow-header and {stalled_n} stalled-body connections "
            f"over {ramp_s:.1f} s with {n_workers} threads")
        for w in self.workers:
            w.start()
        open_deadline = time.monotonic() + ramp_s + CONNECT_TIMEOUT_S + 5.0
        for w in self.workers:
            w.opened.wait(max(0.0, open_deadline - time.monotonic()))
        t_opened = time.monotonic()
        failed_open = [c for c in conns if c.state == "failed"]
        rep["attack_open_s"] = round(t_opened - t0, 3)
        log(f"attack: all connections opened after {t_opened - t0:.2f} s ({len(failed_open)} failed)")

        # The normal client runs while the attacking connections are open: until 1 s before the
        # first of them may be closed by a timeout (opens started at t0), 20 s at most, 3 s at least.
        timeouts = ([a.header_timeout] if slow_n else []) + ([a.body_timeout] if stalled_n else [])
        first_close = min(timeouts) if timeouts else a.header_timeout
        duration = max(3.0, min(20.0, first_close - 1.0 - (time.monotonic() - t0)))
        rep["normal_duration_planned_s"] = round(duration, 3)
        self.go_client(duration)
        t_client = time.monotonic()
        log(f"normal client: {duration:.1f} s back to back")

        wait_until = t_opened + max(a.header_timeout, a.body_timeout) + CLOSE_WAIT_EXTRA_S
        last_note = time.monotonic()
        while time.monotonic() < wait_until and any(w.is_alive() for w in self.workers):
            time.sleep(0.1)
            if time.monotonic() - last_note >= 5.0:
                last_note = time.monotonic()
                live = sum(w.live for w in self.workers)
                log(f"attack: {live} connections still open at {time.monotonic() - t0:.0f} s")
        t_attack_end = time.monotonic()
        normal = self.collect_client(max(5.0, t_client + duration + 15.0 - time.monotonic()))
        rep["normal"] = normal

        # Close whatever the server left open, then stop the sampler.
        for w in self.workers:
            w.halt.set()
        for w in self.workers:
            w.join(10)
            if w.error:
                raise Abort(f"attack thread {w.name} failed: {w.error}")
        self.sampler.stop()
        attack_samples = self.sampler.samples
        self.sampler = None
        rep["attack_rss_samples"] = [[t, mib(k)] for t, k in attack_samples]
        max_kib = max((k for _, k in attack_samples), default=None)
        rep["attack_max_rss_mib"] = mib(max_kib)
        rep["attack_wait_s"] = round(t_attack_end - t_opened, 3)

        def kind_report(kind: str, timeout: int) -> dict:
            cs = [c for c in conns if c.kind == kind]
            opened = [c for c in cs if c.t_open is not None]
            by_server = [c for c in opened if c.closed_by == "server"]
            by_script = [c for c in opened if c.closed_by == "script"]
            if kind == "slow":
                secs = [c.t_closed - c.t_open for c in by_server]  # type: ignore[operator]
            else:
                secs = [c.t_closed - (c.t_last_sent if c.t_last_sent is not None else c.t_open)  # type: ignore[operator]
                        for c in by_server]
            limit = timeout + CLOSE_GRACE_S
            return {
                "requested": len(cs),
                "opened": len(opened),
                "failed_to_open": len(cs) - len(opened),
                "open_errors": dict(Counter(c.error for c in cs if c.t_open is None)),
                "closed_by_server": len(by_server),
                "not_closed_by_server": len(by_script),
                "timeout_s": timeout,
                "limit_s": limit,
                "closed_within_limit": sum(1 for s in secs if s <= limit),
                "closed_late": sum(1 for s in secs if s > limit),
                "closed_before_half_timeout": sum(1 for s in secs if s < timeout / 2.0),
                "close_seconds": spread(secs),
                "measured_from": "open" if kind == "slow" else "last byte sent",
                "close_how": dict(Counter(c.how for c in by_server)),
                "responses": dict(Counter(status_code(c.response) for c in opened)),
                "body_not_fully_sent": sum(1 for c in opened if kind == "stalled" and c.t_last_sent is None),
                "connect_ms": spread([(c.t_open - c.t_connect) * 1000.0 for c in opened]),  # type: ignore[operator]
            }

        rep["slow_header"] = kind_report("slow", a.header_timeout)
        rep["stalled_body"] = kind_report("stalled", a.body_timeout)

        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - t0, 4)

        rep["connections"] = [
            {"kind": c.kind, "connect_s": rel(c.t_connect), "open_s": rel(c.t_open),
             "last_sent_s": rel(c.t_last_sent), "closed_s": rel(c.t_closed), "closed_by": c.closed_by,
             "how": c.how or c.error, "sent": c.sent, "response": status_code(c.response)}
            for c in conns
        ]

        if self.server.poll() is not None:
            raise Abort(f"the server exited (status {self.server.returncode}) during the attack:\n"
                        + self.server_log_tail())

        # -- phase "after"
        log(f"after: sampling RSS every second for {a.after_seconds} s")
        t_after = time.monotonic()
        after: list[tuple[int, int | None]] = []
        for i in range(a.after_seconds + 1):
            delay = t_after + i - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            after.append((i, read_rss_kib(pid)))
        rep["after_rss_samples"] = [[i, mib(k)] for i, k in after]
        recovered_at = next((i for i, k in after if k is not None and k <= RSS_RECOVERY_FACTOR * idle_kib), None)
        rep["after"] = {
            "rss_0s_mib": mib(after[0][1]),
            "recovered_within_2x_idle_at_s": recovered_at,
            "rss_at_recovery_mib": mib(next((k for i, k in after if i == recovered_at), None)),
            f"rss_{a.after_seconds}s_mib": mib(after[-1][1]),
            "rss_end_mib": mib(after[-1][1]),
        }
        if self.server.poll() is not None:
            raise Abort(f"the server exited (status {self.server.returncode}) after the attack")

    # -- verdict and summary

    def checks(self) -> list[dict]:
        rep = self.report
        out = []

        def check(name: str, ok: bool, value: str) -> None:
            out.append({"check": name, "pass": bool(ok), "value": value})

        normal = rep.get("normal")
        if normal is None:
            check("normal client measured", False, "no measurement")
        else:
            p99 = normal.get("p99_ms")
            check(f"normal p99 < {TARGET_P99_MS:g} ms", p99 is not None and p99 < TARGET_P99_MS,
                  "no answer" if p99 is None else f"{p99:.3f} ms over {normal['requests']} requests")
            bad = normal["non_200"] + normal["errors"]
            check("zero non-200 normal answers", bad == 0 and normal["requests"] > 0,
                  f"{normal['non_200']} non-200, {normal['errors']} failed, {normal['requests']} answered")
        max_rss = rep.get("attack_max_rss_mib")
        check(f"max RSS during attack < {TARGET_MAX_RSS_MIB:g} MiB",
              max_rss is not None and max_rss < TARGET_MAX_RSS_MIB,
              "n/a" if max_rss is None else f"{max_rss:.1f} MiB")
        for key, label in (("slow_header", "slow-header"), ("stalled_body", "stalled-body")):
            k = rep.get(key)
            if k is None:
                check(f"{label} connections closed by the server in time", False, "not measured")
                continue
            ok = k["failed_to_open"] == 0 and k["closed_within_limit"] == k["requested"]
            check(f"every {label} connection closed by the server within {k['timeout_s']} + {CLOSE_GRACE_S:g} s", ok,
                  f"{k['closed_within_limit']}/{k['requested']} in time, {k['closed_late']} late, "
                  f"{k['not_closed_by_server']} not closed by server, {k['failed_to_open']} failed to open")
        after = rep.get("after")
        at = None if after is None else after["recovered_within_2x_idle_at_s"]
        check(f"RSS back within {RSS_RECOVERY_FACTOR:g}x idle within {self.args.after_seconds} s", at is not None,
              "not measured" if after is None else ("never" if at is None else f"at {at} s"))
        return out

    def summary(self) -> str:
        rep = self.report
        a = self.args
        cfg = rep.get("config", {})
        pin = rep.get("pinning", {})
        lines = ["", "== serving under slow and stalled clients (127.0.0.1 only) =="]
        lines.append(f"model {rep.get('model', '?')}, port {cfg.get('port', '?')}; server on CPU "
                     f"{pin.get('server_cpu')}, script on CPU {pin.get('script_cpu')}; "
                     f"RLIMIT_NOFILE {rep.get('rlimit_nofile', {}).get('soft', '?')}")
        lines.append(f"server limits: header {a.header_timeout} s, body {a.body_timeout} s, keep-alive "
                     f"{a.keep_alive} s, max connections {cfg.get('max_connections', '?')}")
        for note in self.notes:
            lines.append(f"note: {note}")
        if "idle_rss_mib" in rep:
            lines.append(f"idle RSS (after {WARMUP_REQUESTS} requests): {rep['idle_rss_mib']:.1f} MiB")
        for key, label in (("slow_header", "slow header "), ("stalled_body", "stalled body")):
            k = rep.get(key)
            if not k:
                continue
            c = k["close_seconds"]
            dist = ("n/a" if c["count"] == 0 else
                    f"min {c['min']:.2f} / median {c['median']:.2f} / max {c['max']:.2f} s")
            lines.append(
                f"{label}: {k['opened']}/{k['requested']} opened, {k['closed_by_server']} closed by the server "
                f"({k['closed_within_limit']} within {k['limit_s']:g} s), {k['not_closed_by_server']} not closed "
                f"by the server; {k['measured_from']} to close: {dist} (timeout {k['timeout_s']} s)")
            extra = [f"responses {k['responses']}", f"close {k['close_how']}"]
            if k["failed_to_open"]:
                extra.append(f"open errors {k['open_errors']}")
            if k["closed_before_half_timeout"]:
                extra.append(f"{k['closed_before_half_timeout']} closed before half the timeout")
            if k["body_not_fully_sent"]:
                extra.append(f"{k['body_not_fully_sent']} closed before their 64 KiB were sent")
            lines.append("    " + "; ".join(extra))
        normal = rep.get("normal")
        if normal:
            def ms(v: float | None) -> str:
                return "n/a" if v is None else f"{v:.2f} ms"
            lines.append(
                f"normal client ({normal['duration_s']:.1f} s, one keep-alive connection, during the attack): "
                f"{normal['requests']} requests, p50 {ms(normal['p50_ms'])}, p99 {ms(normal['p99_ms'])}, "
                f"max {ms(normal['max_ms'])}; non-200 {normal['non_200']}, failed {normal['errors']}")
            if normal["error_samples"]:
                lines.append(f"    errors: {normal['error_samples']}")
        if "attack_max_rss_mib" in rep and rep["attack_max_rss_mib"] is not None:
            lines.append(f"RSS during the attack: max {rep['attack_max_rss_mib']:.1f} MiB")
        after = rep.get("after")
        if after:
            at = after["recovered_within_2x_idle_at_s"]
            rec = "never" if at is None else f"at {at} s ({after['rss_at_recovery_mib']:.1f} MiB)"
            end = after["rss_end_mib"]
            lines.append(f"after the attack: RSS {after['rss_0s_mib']:.1f} MiB at 0 s, within "
                         f"{RSS_RECOVERY_FACTOR:g}x idle {rec}, "
                         f"{'n/a' if end is None else f'{end:.1f} MiB'} at {a.after_seconds} s")
        if rep.get("aborted"):
            lines.append(f"ABORTED: {rep['aborted']}")
        lines.append("checks:")
        for c in rep.get("checks", []):
            lines.append(f"  [{'ok' if c['pass'] else 'FAIL'}] {c['check']}: {c['value']}")
        return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serving", help="path to the serving binary")
    p.add_argument("--model-repository", help="model repository directory (passed to `serving serve`)")
    p.add_argument("--model", help="model to use (default: the first of GET /v2/models)")
    p.add_argument("--slow-header", type=int, default=2000, help="slow-header connections (default 2000)")
    p.add_argument("--stalled-body", type=int, default=200, help="stalled-body connections (default 200)")
    p.add_argument("--header-timeout", type=int, default=10, help="--header-timeout-seconds (default 10)")
    p.add_argument("--body-timeout", type=int, default=10, help="--body-timeout-seconds (default 10)")
    p.add_argument("--keep-alive", type=int, default=10, help="--keep-alive-seconds (default 10)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p.add_argument("--json", help="write every figure to this JSON file")
    p.add_argument("--after-seconds", type=int, default=60, help="RSS sampling after the attack (default 60)")
    p.add_argument("--time-limit", type=int, default=300, help="hard bound on the whole run, seconds (default 300)")
    p.add_argument("--normal-client", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.normal_client is None:
        if not args.serving or not args.model_repository:
            p.error("--serving and --model-repository are required")
        for name in ("slow_header", "stalled_body", "after_seconds"):
            if getattr(args, name) < 0:
                p.error(f"--{name.replace('_', '-')} must be >= 0")
        for name in ("header_timeout", "body_timeout", "keep_alive", "time_limit"):
            if getattr(args, name) < 1:
                p.error(f"--{name.replace('_', '-')} must be >= 1")
        if not 0 <= args.port <= 65535:
            p.error("--port must be 0..65535")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.normal_client is not None:
        return normal_client_main(args.normal_client)

    run = Run(args)

    def on_signal(signum: int, _frame) -> None:
        if signum == signal.SIGALRM:
            raise Abort(f"hard time limit of {args.time_limit} s reached")
        raise Abort(f"stopped by signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGALRM, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.alarm(args.time_limit)

    # Backstop, should the main thread be stuck where the alarm cannot reach it.
    def backstop() -> None:
        for proc in (run.client, run.server):
            if proc is not None and proc.poll() is None:
                try:
                    proc.kill()
                except OSError:
                    pass
        print(f"[attack] hard time limit exceeded by {STOP_GRACE_S * 3:.0f} s; killed\nFAIL", flush=True)
        os._exit(1)

    watchdog = threading.Timer(args.time_limit + STOP_GRACE_S * 3, backstop)
    watchdog.daemon = True
    watchdog.start()

    t_start = time.monotonic()
    try:
        try:
            run.execute()
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            run.cleanup()
    except Abort as e:
        run.report["aborted"] = str(e)
        log(f"aborted: {e}")
    except Exception as e:  # a bug or an unexpected answer: still a verdict, and the server is stopped
        traceback.print_exc()
        run.report["aborted"] = f"{type(e).__name__}: {e}"
    watchdog.cancel()

    run.report["notes"] = run.notes
    run.report["elapsed_s"] = round(time.monotonic() - t_start, 3)
    run.report["checks"] = run.checks()
    passed = all(c["pass"] for c in run.report["checks"]) and not run.report.get("aborted")
    run.report["result"] = "PASS" if passed else "FAIL"
    print(run.summary(), flush=True)
    if args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(run.report, f, indent=1)
                f.write("\n")
            log(f"wrote {args.json}")
        except OSError as e:
            log(f"cannot write {args.json}: {e}")
    print("PASS" if passed else "FAIL", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

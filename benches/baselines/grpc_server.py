"""gRPC Python model server: the grpcio + onnxruntime peer a latency-minded user writes.

Serves ``inference.GRPCInferenceService`` (the Open Inference Protocol over gRPC, Triton's
``grpc_service.proto``) from the generated stubs that ship in tritonclient
(``tritonclient.grpc.service_pb2`` and ``service_pb2_grpc``):

* ``ServerLive``, ``ServerReady``, ``ModelReady``, ``ModelMetadata``;
* ``ModelInfer``: inputs from ``raw_input_contents`` (FP64, FP32 and the integer types as
  little-endian numbers; BYTES as 4-byte little-endian lengths, each followed by its bytes) or
  from the typed ``contents``; outputs in ``raw_output_contents`` with the names, datatypes and
  shapes ``serving serve --grpc-addr`` answers with: ``label`` BYTES ``[N]`` and
  ``probabilities`` FP32 ``[N, K]`` for a classifier, ``prediction`` FP32 ``[N]`` for a
  regressor. Unknown models are NOT_FOUND, malformed inputs INVALID_ARGUMENT. Every other
  method is UNIMPLEMENTED (the generated servicer's default).

Usage::

    python grpc_server.py --model-repository DIR --port 8001 [--host 127.0.0.1] [--server sync|aio]

It loads the highest integer version of every model directory (its ``model.onnx`` and
``manifest.json``, as ``server_tuned.py`` does) and runs onnxruntime with one intra-op and one
inter-op thread, sequential execution: one core, as the compared servers get. Numeric inputs
are fed as float32 ``[N, 1]``, text as string ``[N, 1]``.

Which grpcio server: both were measured with benches/grpc.py's load (h2load on the other
core, one diamonds record per request, 1, 8 and 64 concurrent streams, this server pinned to one
core of a 2-vCPU machine, medians of 3 runs of 3 s, taken in turn): the classic
``grpc.server(futures.ThreadPoolExecutor(max_workers=4))`` answered 972 / 1,373 / 1,361
requests/s, ``grpc.aio`` 940 / 1,042 / 1,111 (8 workers: 1,111 / 1,252 / 1,253; 1 and 16 no
better). Even ``ServerLive``, which does no work, tops out near 1.7k (aio) and 2.3k (thread pool)
requests/s here, while decoding, running and encoding one request in-process takes about 220 µs:
grpcio's per-call cost dominates, and ``grpc.aio`` adds Python-level work per call (a coroutine
and asyncio callbacks around each one) that costs more than the thread pool's hand-off, the
completion queue being polled in C with the GIL released. So the thread-pool server with 4
workers is the default and the peer benches/grpc.py measures; ``--server aio`` keeps the other
for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import struct
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from tritonclient.grpc import service_pb2, service_pb2_grpc

# Little-endian numpy dtypes of the protocol's numeric datatypes.
NUMERIC = {
    "FP64": "<f8", "FP32": "<f4", "FP16": "<f2",
    "INT64": "<i8", "INT32": "<i4", "INT16": "<i2", "INT8": "i1",
    "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2", "UINT8": "u1",
}
# The typed `contents` field that carries each datatype.
CONTENTS = {
    "FP64": "fp64_contents", "FP32": "fp32_contents",
    "INT64": "int64_contents", "INT32": "int_contents", "INT16": "int_contents", "INT8": "int_contents",
    "UINT64": "uint64_contents", "UINT32": "uint_contents", "UINT16": "uint_contents", "UINT8": "uint_contents",
    "BYTES": "bytes_contents",
}
LENGTH = struct.Struct("<I")


class Model:
    """One loaded model: its manifest and an onnxruntime session."""

    def __init__(self, version_dir: Path):
        manifest = json.loads((version_dir / "manifest.json").read_text())
        self.name: str = manifest["name"]
        self.version: str = version_dir.name
        self.features: list[tuple[str, bool]] = [
            (f["name"], f["kind"] == "numeric") for f in manifest["schema"]["features"]
        ]
        self.is_classification = manifest["schema"]["task"] != "regression"
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            str(version_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.output_names = ["label", "probabilities"] if self.is_classification else ["prediction"]
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        n_labels = len(manifest.get("labels") or [])
        outputs = ([tensor(name="label", datatype="BYTES", shape=[-1]),
                    tensor(name="probabilities", datatype="FP32", shape=[-1, n_labels])]
                   if self.is_classification else [tensor(name="prediction", datatype="FP32", shape=[-1])])
        self.metadata = service_pb2.ModelMetadataResponse(
            name=self.name, versions=[self.version], platform="onnxruntime_onnx",
            inputs=[tensor(name=n, datatype="FP32" if numeric else "BYTES", shape=[-1]) for n, numeric in self.features],
            outputs=outputs)


def load_repository(repository: Path) -> dict[str, Model]:
    """Loads the highest integer version of every model directory in the repository."""
    models: dict[str, Model] = {}
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        if versions:
            model = Model(max(versions, key=lambda p: int(p.name)))
            models[model.name] = model
    return models


class Failure(Exception):
    """A request the server refuses: a gRPC status code and its message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> Failure:
    return Failure(grpc.StatusCode.INVALID_ARGUMENT, message)


def rows_of(tensor) -> int:
    shape = list(tensor.shape)
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        if shape[0] >= 0:
            return shape[0]
    raise invalid(f"input '{tensor.name}': shape {shape} is not [N] or [N, 1]")


def split_bytes(raw: bytes, n: int, name: str) -> list[str]:
    """n length-prefixed strings (4-byte little-endian length, then the bytes)."""
    values, pos, end = [], 0, len(raw)
    for _ in range(n):
        if pos + 4 > end:
            raise invalid(f"input '{name}': {n} strings expected, the raw contents end after {len(values)}")
        (length,) = LENGTH.unpack_from(raw, pos)
        pos += 4
        if pos + length > end:
            raise invalid(f"input '{name}': string {len(values)} runs past the raw contents")
        values.append(raw[pos:pos + length].decode("utf-8", errors="replace"))
        pos += length
    if pos != end:
        raise invalid(f"input '{name}': {end - pos} bytes after the {n} strings")
    return values


def feed(tensor, raw: bytes | None, numeric: bool, n: int) -> np.ndarray:
    """One input as onnxruntime wants it: float32 [N, 1] or string [N, 1]."""
    datatype = tensor.datatype
    if numeric:
        dtype = NUMERIC.get(datatype)
        if dtype is None:
            raise invalid(f"input '{tensor.name}': datatype {datatype}, expected a number type")
        if raw is not None:
            if len(raw) != n * np.dtype(dtype).itemsize:
                raise invalid(f"input '{tensor.name}': {len(raw)} bytes of {datatype} for {n} rows")
            values = np.frombuffer(raw, dtype=dtype)
        else:
            values = np.asarray(getattr(tensor.contents, CONTENTS.get(datatype, "fp32_contents")))
            if values.shape[0] != n:
                raise invalid(f"input '{tensor.name}': {values.shape[0]} values for {n} rows")
        return values.astype(np.float32).reshape(n, 1)
    if datatype != "BYTES":
        raise invalid(f"input '{tensor.name}': datatype {datatype}, expected BYTES")
    if raw is not None:
        strings = split_bytes(raw, n, tensor.name)
    else:
        strings = [v.decode("utf-8", errors="replace") for v in tensor.contents.bytes_contents]
        if len(strings) != n:
            raise invalid(f"input '{tensor.name}': {len(strings)} values for {n} rows")
    return np.array(strings, dtype=object).reshape(n, 1)


def encode_bytes(values: np.ndarray) -> bytes:
    parts = []
    for value in values.ravel().tolist():
        data = value.encode() if isinstance(value, str) else bytes(value)
        parts.append(LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def infer(models: dict[str, Model], request) -> service_pb2.ModelInferResponse:
    """Decode, run the model, encode; raises Failure for a request it refuses."""
    model = models.get(request.model_name)
    if model is None or (request.model_version not in ("", model.version)):
        raise Failure(grpc.StatusCode.NOT_FOUND, f"model '{request.model_name}' not found")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise invalid(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    tensors = {}
    for index, tensor in enumerate(request.inputs):
        if tensor.name in tensors:
            raise invalid(f"input '{tensor.name}' given twice")
        tensors[tensor.name] = (tensor, raw[index] if raw else None)
    feeds, n_rows = {}, None
    for name, numeric in model.features:
        given = tensors.pop(name, None)
        if given is None:
            raise invalid(f"missing input '{name}'")
        tensor, contents = given
        n = rows_of(tensor)
        if n_rows is None:
            n_rows = n
        elif n != n_rows:
            raise invalid(f"input '{name}': {n} rows, the first input has {n_rows}")
        feeds[name] = feed(tensor, contents, numeric, n)
    if tensors:
        raise invalid(f"unknown input '{next(iter(tensors))}'")
    wanted = [o.name for o in request.outputs] or model.output_names
    for name in wanted:
        if name not in model.output_names:
            raise invalid(f"unknown output '{name}'")
    results = dict(zip(model.output_names, model.session.run(model.output_names, feeds)))
    response = service_pb2.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
    for name in wanted:
        array = results[name]
        if name == "label":
            response.outputs.add(name=name, datatype="BYTES", shape=array.shape)
            response.raw_output_contents.append(encode_bytes(array))
        else:
            response.outputs.add(name=name, datatype="FP32", shape=array.shape)
            response.raw_output_contents.append(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return response


class SyncServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Handlers for grpc.server(ThreadPoolExecutor)."""

    def __init__(self, models: dict[str, Model]):
        self.models = models

    def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=True)

    def ModelReady(self, request, context):
        model = self.models.get(request.name)
        return service_pb2.ModelReadyResponse(ready=model is not None and request.version in ("", model.version))

    def ModelMetadata(self, request, context):
        model = self.models.get(request.name)
        if model is None or request.version not in ("", model.version):
            context.abort(grpc.StatusCode.NOT_FOUND, f"model '{request.name}' not found")
        return model.metadata

    def ModelInfer(self, request, context):
        try:
            return infer(self.models, request)
        except Failure as failure:
            context.abort(failure.code, failure.message)


class AioServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The same handlers as coroutines for grpc.aio: they run on the event loop itself."""

    def __init__(self, models: dict[str, Model]):
        self.models = models

    async def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelReady(self, request, context):
        model = self.models.get(request.name)
        return service_pb2.ModelReadyResponse(ready=model is not None and request.version in ("", model.version))

    async def ModelMetadata(self, request, context):
        model = self.models.get(request.name)
        if model is None or request.version not in ("", model.version):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model '{request.name}' not found")
        return model.metadata

    async def ModelInfer(self, request, context):
        try:
            return infer(self.models, request)
        except Failure as failure:
            await context.abort(failure.code, failure.message)


# Keep-alive and message limits like a production configuration; nothing that changes speed.
OPTIONS = [("grpc.max_receive_message_length", 16 << 20), ("grpc.so_reuseport", 0)]


def serve_sync(models: dict[str, Model], address: str, workers: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=OPTIONS)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(SyncServicer(models), server)
    if server.add_insecure_port(address) == 0:
        raise SystemExit(f"grpc_server.py: cannot listen on {address}")
    server.start()
    stop = lambda *_: server.stop(grace=1)  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.wait_for_termination()


async def serve_aio(models: dict[str, Model], address: str) -> None:
    server = grpc.aio.server(options=OPTIONS)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(AioServicer(models), server)
    if server.add_insecure_port(address) == 0:
        raise SystemExit(f"grpc_server.py: cannot listen on {address}")
    await server.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await server.stop(grace=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=("sync", "aio"), default="sync",
                        help="grpc.server with a thread pool (default, the faster here) or grpc.aio")
    parser.add_argument("--workers", type=int, default=4, help="thread-pool size of --server sync")
    args = parser.parse_args()
    if not args.model_repository.is_dir():
        parser.error(f"{args.model_repository} is not a directory")
    models = load_repository(args.model_repository)
    if not models:
        parser.error(f"no model versions (<name>/<integer>/model.onnx) under {args.model_repository}")
    address = f"{args.host}:{args.port}"
    if args.server == "sync":
        serve_sync(models, address, args.workers)
    else:
        asyncio.run(serve_aio(models, address))


if __name__ == "__main__":
    main()

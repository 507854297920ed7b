"""`tritonclient.grpc`, unchanged, against `serving serve --grpc-addr`: run by tests/end_to_end/grpc.rs.

Default mode (--grpc, --http, --model, --rows, --scored): health and metadata over gRPC; every
row of --rows predicted over gRPC (numeric columns as FP64, text as BYTES, missing values as NaN
and empty text) and compared bit for bit with `serving predict`'s --scored file and with HTTP v2
JSON for the same rows; then the same malformed requests over gRPC and HTTP, which must fail
with the same text (gRPC INVALID_ARGUMENT or NOT_FOUND, HTTP 400 or 404). Prints "N rows agree".

--certificate PEM: the same checks over TLS, gRPC and HTTPS alike, trusting only this certificate
(the server runs with --tls-certificate and --tls-key).

--auth-check (--grpc, --model, --scorer-token, --reader-token): health needs no token, metadata
without one is UNAUTHENTICATED, inference with the metadata-only token PERMISSION_DENIED, with
an unknown token UNAUTHENTICATED, with the inference token it answers. Prints "access control
agrees".
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import ssl
import sys
import urllib.error
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def read_rows(path: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def columns(client, model: str, header: list[str], rows: list[list[str]]):
    """The model's inputs from these rows: (name, datatype, numpy array) in metadata order."""
    metadata = client.get_model_metadata(model)
    out = []
    for tensor in metadata.inputs:
        index = header.index(tensor.name)
        cells = [row[index] for row in rows]
        if tensor.datatype == "BYTES":
            values = np.array([c.encode() for c in cells], dtype=np.object_)
            out.append((tensor.name, "BYTES", values))
        else:
            values = np.array([float(c) if c not in ("", "NA") else math.nan for c in cells], dtype=np.float64)
            out.append((tensor.name, "FP64", values))
    return out


def grpc_inputs(tensors):
    inputs = []
    for name, datatype, values in tensors:
        tensor = grpcclient.InferInput(name, [len(values)], datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


# Set by main() from --certificate: HTTPS trusting only that certificate; None is plain HTTP.
TLS: ssl.SSLContext | None = None


def http_infer(http: str, model: str, body: dict) -> tuple[int, dict]:
    scheme = "https" if TLS else "http"
    request = urllib.request.Request(
        f"{scheme}://{http}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=TLS) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def http_body(tensors) -> dict:
    def value(v):
        if isinstance(v, bytes):
            return v.decode()
        return None if math.isnan(v) else float(v)

    return {
        "inputs": [
            {"name": n, "shape": [len(v)], "datatype": d, "data": [value(x) for x in v.tolist()]}
            for n, d, v in tensors
        ]
    }


def f32_bits(values) -> list[int]:
    return np.asarray(values, dtype=np.float32).view(np.uint32).tolist()


def grpc_error(call) -> tuple[str, str]:
    try:
        call()
    except InferenceServerException as error:
        return str(error.status()), error.message()
    raise AssertionError("the call succeeded but should have failed")


def check_predictions(args, client) -> int:
    header, rows = read_rows(args.rows)
    tensors = columns(client, args.model, header, rows)
    result = client.infer(args.model, grpc_inputs(tensors))
    scored_header, scored = read_rows(args.scored)
    assert len(scored) == len(rows), (len(scored), len(rows))
    status, http = http_infer(args.http, args.model, http_body(tensors))
    assert status == 200, http
    http_outputs = {o["name"]: o for o in http["outputs"]}
    response = result.get_response()
    names = [o.name for o in response.outputs]
    if "prediction" in names:
        ours = result.as_numpy("prediction")
        expected = [np.float32(row[scored_header.index("prediction")]) for row in scored]
        assert f32_bits(ours) == f32_bits(expected), "gRPC predictions differ from serving predict"
        assert f32_bits(ours) == f32_bits(http_outputs["prediction"]["data"]), "gRPC differs from HTTP v2"
    else:
        labels = [v.decode() for v in result.as_numpy("label").tolist()]
        probabilities = result.as_numpy("probabilities")
        assert labels == [row[scored_header.index("label")] for row in scored], "labels differ from serving predict"
        assert labels == http_outputs["label"]["data"], "labels differ from HTTP v2"
        float_columns = [i for i, name in enumerate(scored_header) if name not in ("label", "error")]
        expected = [[np.float32(row[i]) for i in float_columns] for row in scored]
        assert f32_bits(probabilities.reshape(-1)) == f32_bits(np.array(expected).reshape(-1)), (
            "probabilities differ from serving predict"
        )
        assert f32_bits(probabilities.reshape(-1)) == f32_bits(http_outputs["probabilities"]["data"]), (
            "probabilities differ from HTTP v2"
        )
    assert response.model_name == args.model and response.model_version == http["model_version"]
    return len(rows)


def check_errors(args, client) -> None:
    """The same bad requests over gRPC and HTTP: the same text, the matching code."""
    header, rows = read_rows(args.rows)
    tensors = columns(client, args.model, header, rows[:3])
    name, datatype, values = tensors[0]
    numeric = next(t for t in tensors if t[1] == "FP64")
    cases = {
        "unknown input": [("no_such_column", datatype, values)] + tensors[1:],
        "duplicate input": tensors + [tensors[0]],
        "missing input": tensors[1:],
        "text in a numeric input": [
            (n, "BYTES", np.array([b"1"] * len(v), dtype=np.object_)) if n == numeric[0] else (n, d, v)
            for n, d, v in tensors
        ],
        "rows disagree": [(n, d, v[:2]) if n == numeric[0] else (n, d, v) for n, d, v in tensors],
    }
    for case, bad in cases.items():
        code, message = grpc_error(lambda: client.infer(args.model, grpc_inputs(bad)))
        status, body = http_infer(args.http, args.model, http_body(bad))
        assert code == "StatusCode.INVALID_ARGUMENT", (case, code, message)
        assert status == 400, (case, status, body)
        assert message == body["error"], f"{case}: gRPC says {message!r}, HTTP says {body['error']!r}"
    code, message = grpc_error(lambda: client.infer("no_such_model", grpc_inputs(tensors)))
    status, body = http_infer(args.http, "no_such_model", http_body(tensors))
    assert code == "StatusCode.NOT_FOUND" and status == 404 and message == body["error"], (code, message, body)
    wrong_output = [grpcclient.InferRequestedOutput("no_such_output")]
    code, message = grpc_error(lambda: client.infer(args.model, grpc_inputs(tensors), outputs=wrong_output))
    assert code == "StatusCode.INVALID_ARGUMENT" and "no_such_output" in message, (code, message)
    code, _ = grpc_error(lambda: client.get_model_metadata("no_such_model"))
    assert code == "StatusCode.NOT_FOUND", code


def check_access(args) -> None:
    client = grpcclient.InferenceServerClient(url=args.grpc)
    assert client.is_server_live() and client.is_server_ready(), "health needs no token"
    code, _ = grpc_error(lambda: client.get_model_metadata(args.model))
    assert code == "StatusCode.UNAUTHENTICATED", code
    reader = {"authorization": f"Bearer {args.reader_token}"}
    metadata = client.get_model_metadata(args.model, headers=reader)
    tensors = [
        (t.name, "BYTES" if t.datatype == "BYTES" else "FP64",
         np.array([b""], dtype=np.object_) if t.datatype == "BYTES" else np.array([math.nan]))
        for t in metadata.inputs
    ]
    code, _ = grpc_error(lambda: client.infer(args.model, grpc_inputs(tensors), headers=reader))
    assert code == "StatusCode.PERMISSION_DENIED", code
    wrong = {"authorization": "Bearer not-a-token-of-this-server"}
    code, _ = grpc_error(lambda: client.infer(args.model, grpc_inputs(tensors), headers=wrong))
    assert code == "StatusCode.UNAUTHENTICATED", code
    scorer = {"authorization": f"Bearer {args.scorer_token}"}
    result = client.infer(args.model, grpc_inputs(tensors), headers=scorer)
    assert result.get_response().model_name == args.model
    print("access control agrees")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--http")
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows")
    parser.add_argument("--scored")
    parser.add_argument("--auth-check", action="store_true")
    parser.add_argument("--scorer-token")
    parser.add_argument("--reader-token")
    parser.add_argument("--certificate")
    args = parser.parse_args()
    if args.auth_check:
        check_access(args)
        return 0
    if args.certificate:
        global TLS
        TLS = ssl.create_default_context(cafile=args.certificate)
        # tritonclient reads root_certificates from this file.
        client = grpcclient.InferenceServerClient(url=args.grpc, ssl=True, root_certificates=args.certificate)
    else:
        client = grpcclient.InferenceServerClient(url=args.grpc)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(args.model) and not client.is_model_ready("no_such_model")
    server = client.get_server_metadata()
    assert server.name == "serving" and "binary_tensor_data" in server.extensions, server
    n = check_predictions(args, client)
    check_errors(args, client)
    print(f"{n} rows agree with serving predict and HTTP v2, bit for bit; errors agree with HTTP")
    return 0


if __name__ == "__main__":
    sys.exit(main())

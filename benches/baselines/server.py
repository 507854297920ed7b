"""Baseline model server: FastAPI + uvicorn + onnxruntime, the way deployment tutorials teach it.

Serves every model of a model repository (``REPO/<name>/<version>/{manifest.json,model.onnx}``,
highest integer version wins) over two JSON protocols:

* ``POST /v1/models/{name}:predict``  KServe v1 ``{"instances": [{col: value, ...}, ...]}``
* ``POST /v2/models/{name}/infer``    Open Inference Protocol v2 (JSON only, no binary extension)
* ``GET  /v2/health/ready``

Usage::

    python server.py --model-repository DIR --port 8080 [--host 127.0.0.1] [--workers 1]

The inference handlers are plain ``def`` functions with pydantic request bodies: FastAPI parses
and validates the JSON on the event loop, then runs the handler (which blocks in
``session.run``) in its threadpool, as the FastAPI docs recommend for blocking work.
"""

from __future__ import annotations

import argparse
import json
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

# The repository path reaches the app (and every worker process) through the environment,
# because uvicorn imports the app by name when it runs more than one worker.
REPOSITORY_ENV = "BASELINE_MODEL_REPOSITORY"


class Model:
    """One loaded model: its manifest and an onnxruntime session."""

    def __init__(self, version_dir: Path):
        with open(version_dir / "manifest.json") as f:
            manifest = json.load(f)
        self.name: str = manifest["name"]
        self.version: str = version_dir.name
        self.features: list[dict] = manifest["schema"]["features"]
        self.task: str = manifest["schema"]["task"]
        self.labels: list[str] = manifest.get("labels") or []
        self.is_classification = self.task != "regression"

        # One thread per run, the same single-core budget as the compared server.
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(version_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.output_names = ["label", "probabilities"] if self.is_classification else ["prediction"]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the model; returns its outputs by name."""
        results = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, results))


def load_repository(repository: Path) -> dict[str, Model]:
    """Loads the highest integer version of every model directory in the repository."""
    models: dict[str, Model] = {}
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        if not versions:
            continue
        model = Model(max(versions, key=lambda p: int(p.name)))
        models[model.name] = model
    return models


MODELS: dict[str, Model] = {}


@asynccontextmanager
async def lifespan(app: FastAPI):
    # Load every model once, at startup (in each worker process).
    MODELS.update(load_repository(Path(os.environ[REPOSITORY_ENV])))
    yield
    MODELS.clear()


app = FastAPI(title="onnxruntime baseline", lifespan=lifespan)


def get_model(name: str) -> Model:
    model = MODELS.get(name)
    if model is None:
        raise HTTPException(status_code=404, detail=f"model '{name}' not found")
    return model


def numeric_column(values: list[Any], name: str) -> np.ndarray:
    """float32 [N, 1]; None becomes NaN (missing)."""
    try:
        return np.array(values, dtype=np.float32).reshape(-1, 1)
    except (TypeError, ValueError) as e:
        raise HTTPException(status_code=400, detail=f"column '{name}': expected numbers: {e}") from e


def categorical_column(values: list[Any]) -> np.ndarray:
    """Strings [N, 1]; None becomes "" (missing)."""
    return np.array(["" if v is None else str(v) for v in values], dtype=object).reshape(-1, 1)


def float_list(array: np.ndarray) -> list:
    """Floats for JSON, flattened; NaN (which JSON lacks) becomes null."""
    values = array.ravel()
    if np.isnan(values).any():
        return [None if np.isnan(v) else float(v) for v in values]
    return values.tolist()


# ---------------------------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------------------------


@app.get("/v2/health/ready")
async def ready():
    return {"ready": True}


# ---------------------------------------------------------------------------------------------
# KServe v1
# ---------------------------------------------------------------------------------------------


class V1Request(BaseModel):
    instances: list[dict[str, Any]]


@app.post("/v1/models/{name}:predict")
def v1_predict(name: str, request: V1Request):
    model = get_model(name)
    instances = request.instances

    # Build each input column once: missing keys and nulls are missing values.
    feeds = {}
    for feature in model.features:
        column = feature["name"]
        values = [instance.get(column) for instance in instances]
        if feature["kind"] == "numeric":
            feeds[column] = numeric_column(values, column)
        else:
            feeds[column] = categorical_column(values)

    outputs = model.run(feeds)
    if not model.is_classification:
        return {"predictions": float_list(outputs["prediction"])}

    labels = outputs["label"].tolist()
    n_classes = outputs["probabilities"].shape[1]
    flat = float_list(outputs["probabilities"])
    probabilities = [flat[i : i + n_classes] for i in range(0, len(flat), n_classes)]
    return {
        "predictions": [
            {"label": label, "probabilities": dict(zip(model.labels, row))}
            for label, row in zip(labels, probabilities)
        ]
    }


# ---------------------------------------------------------------------------------------------
# Open Inference Protocol v2 (JSON)
# ---------------------------------------------------------------------------------------------


class InferInput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] | None = None


def flatten(data: list[Any]) -> list[Any]:
    """The protocol allows row-major nested lists as well as flat ones."""
    if data and isinstance(data[0], list):
        return [v for item in data for v in flatten(item)]
    return data


@app.post("/v2/models/{name}/infer")
def v2_infer(name: str, request: InferRequest):
    model = get_model(name)
    inputs = {tensor.name: tensor for tensor in request.inputs}

    feeds = {}
    n_rows = None
    for feature in model.features:
        column = feature["name"]
        tensor = inputs.get(column)
        if tensor is None:
            raise HTTPException(status_code=400, detail=f"missing input '{column}'")
        values = flatten(tensor.data)
        if n_rows is None:
            n_rows = len(values)
        if len(values) != n_rows or (tensor.shape and tensor.shape[0] != n_rows):
            raise HTTPException(status_code=400, detail=f"input '{column}': expected {n_rows} rows")
        if feature["kind"] == "numeric":
            feeds[column] = numeric_column(values, column)
        else:
            feeds[column] = categorical_column(values)

    results = model.run(feeds)

    # Every output by default, or just the ones asked for, in the order asked.
    wanted = [o.name for o in request.outputs] if request.outputs else model.output_names
    outputs = []
    for output in wanted:
        if output not in results:
            raise HTTPException(status_code=400, detail=f"unknown output '{output}'")
        array = results[output]
        if output == "label":
            datatype, data = "BYTES", array.ravel().tolist()
        else:
            datatype, data = "FP32", float_list(array)
        outputs.append({"name": output, "datatype": datatype, "shape": list(array.shape), "data": data})

    response = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    if not args.model_repository.is_dir():
        parser.error(f"{args.model_repository} is not a directory")
    os.environ[REPOSITORY_ENV] = str(args.model_repository.resolve())

    uvicorn.run(
        "server:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

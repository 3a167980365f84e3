"""A model's search, drawn by Optuna's own plots from its trial runs in MLflow (fed in as finished trials)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from raymlx.report._plot import png
from raymlx.report._section import Chart
from raymlx.space import distributions
from raymlx.spec import FloatParam, IntParam

__all__ = ["TrialRecord", "trial_records", "study_from_trials", "search_charts", "PARAM_PREFIX"]

logger = logging.getLogger(__name__)
PARAM_PREFIX = "params/"  # how Tune's flattened trial config names a searched parameter in MLflow


def _parse(text: str, param, distribution) -> Any:
    """A parameter's logged text back as the value Optuna's distribution holds."""
    if isinstance(param, FloatParam):
        return float(text)
    if isinstance(param, IntParam):
        return int(float(text))
    positions = {str(v): i for i, v in enumerate(param.values)}
    plain = list(distribution.choices) == list(param.values)  # else Optuna holds positions (see raymlx.space)
    return param.values[positions[text]] if plain else positions[text]


@dataclass(frozen=True)
class TrialRecord:
    """A trial run as the search plots read it: its searched parameters as logged, its score, whether it finished."""

    params: dict[str, str]  # by parameter name (without :data:`PARAM_PREFIX`)
    score: float | None
    finished: bool


def trial_records(runs: list, *, metric: str) -> list[TrialRecord]:
    """A model's trial runs (``mlflow.entities.Run``) as records, in the order they started: what the report's
    processes draw the search from, with no MLflow of their own."""
    return [TrialRecord({key[len(PARAM_PREFIX):]: value for key, value in run.data.params.items()
                         if key.startswith(PARAM_PREFIX)},
                        run.data.metrics.get(metric), run.info.status == "FINISHED")
            for run in sorted(runs, key=lambda r: r.info.start_time)]


def study_from_trials(trials: list[TrialRecord], space: dict, *, mode: str):
    """An in-memory Optuna study holding a model's trials, finished ones with their score, the rest failed.

    Args:
        trials: The model's trials (:func:`trial_records`).
        space: The model's search space from the spec.
        mode: ``min`` or ``max``.
    """
    import optuna

    dists = distributions(space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line on the command's output for each model
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    for trial in trials:
        try:
            params = {name: _parse(trial.params[name], space[name], dists[name]) for name in space}
        except (KeyError, ValueError):
            continue  # logged by an older spec with another space: not comparable
        value = trial.score
        finished = value is not None and value == value and trial.finished
        state = optuna.trial.TrialState.COMPLETE if finished else optuna.trial.TrialState.FAIL
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, state=state,
                                                  value=value if finished else None))
    return study


def _plots() -> list[tuple[str, str, Callable, int, bool]]:
    """(file, title, Optuna plot, fewest finished trials and varied parameters it needs, whether it is cropped to
    fit what it draws: parameter names as labels, a legend beside the axes)."""
    from optuna.visualization import matplotlib as vis

    return [("optimization_history", "Optimization history", vis.plot_optimization_history, 1, True),
            ("param_importances", "Parameter importances", vis.plot_param_importances, 2, True),
            ("parallel_coordinate", "Parallel coordinates", vis.plot_parallel_coordinate, 2, True),
            ("slice", "Slice plot", vis.plot_slice, 1, False)]


def search_charts(study, *, metric: str) -> tuple[list[Chart], list[str]]:
    """Optuna's history, importance, parallel-coordinate and slice plots of a study, and notes on those it could not draw."""
    import optuna

    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    varied = [n for n in (finished[0].params if finished else {}) if len({str(t.params[n]) for t in finished}) > 1]
    charts, notes, skipped = [], [], []
    for name, title, plot, fewest, crop in _plots():
        if len(finished) < fewest or (name != "optimization_history" and len(varied) < fewest):
            skipped.append((title, fewest))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                drawn = plot(study, target_name=metric)
        except Exception as exc:  # a plot Optuna cannot draw for this study: say so, draw the rest
            logger.info("cannot draw %s", name, exc_info=True)
            notes.append(f"{title}: not drawn ({type(exc).__name__}: {exc})")
            continue
        axes = drawn.flat[0] if hasattr(drawn, "flat") else drawn
        charts.append(Chart(f"plots/search/{name}.png", title, "search", png(axes.figure, crop=crop)))
    if skipped:
        fewest = max(f for _, f in skipped)
        notes.insert(0, f"{' and '.join(t for t, _ in skipped)}: not drawn; "
                        f"{'they need' if len(skipped) > 1 else 'it needs'} {fewest} searched parameter"
                        f"{'s' if fewest > 1 else ''} that varied over {len(finished)} finished trials, "
                        f"here {len(varied)}.")
    return charts, notes

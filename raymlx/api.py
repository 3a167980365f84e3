"""raymlx from Python (notebooks, pipelines): the same steps as the command line, returning objects instead of printing.

Importing this module is cheap; each function imports what it needs when called.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import pandas as pd

    from raymlx.champion import ServedPredictor
    from raymlx.experiment import ExperimentResult

__all__ = ["tune", "validate", "load_champion", "Overrides"]

Overrides = Union[Mapping[str, Any], Sequence[str], None]
"""Spec overrides: ``{"models.ridge.search.num_samples": 5}``, or ``["models.ridge.search.num_samples=5"]`` as ``--set``."""


def _override_strings(overrides: Overrides) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]  # JSON is YAML
    return [str(text) for text in overrides]


def validate(spec: str | Path, *, overrides: Overrides = None) -> pd.DataFrame:
    """Check a spec as ``raymlx validate`` does, without starting Ray.

    Args:
        spec: Path of the spec file.
        overrides: Values that replace the spec's (see :data:`Overrides`).

    Returns:
        The data set as the experiment sees it.

    Raises:
        raymlx.errors.SpecError: Listing every problem, each located in the spec.
    """
    from raymlx.checks import validate as run_checks
    from raymlx.spec_io import load_spec

    frame = run_checks(load_spec(spec, overrides=_override_strings(overrides)))
    assert frame is not None  # read_data is on
    return frame


def tune(spec: str | Path, *, overrides: Overrides = None, address: str | None = None,
         verbose: bool = False, resume: bool = False) -> ExperimentResult:
    """Run the experiment as ``raymlx tune`` does: validate, tune every model on Ray, register the champion,
    write the report (unless the spec turns it off).

    Args:
        spec: Path of the spec file.
        overrides: Values that replace the spec's (see :data:`Overrides`).
        address: Ray cluster to join (``auto``, ``ray://host:10001``); default: the spec's, else a local runtime.
        verbose: Show Ray's worker output.
        resume: Continue the spec's last interrupted session instead of starting a new one.

    Returns:
        The leaderboard, the champion's registered URI and version, and the MLflow ids.

    Raises:
        raymlx.errors.RaymlxError: For bad input (spec, data); nothing is run then.
        raymlx.experiment.ExperimentInterrupted: On Ctrl-C (a ``KeyboardInterrupt``); the session's runs are
            closed as KILLED and ``resume=True`` continues it.
    """
    from raymlx.checks import validate as run_checks
    from raymlx.experiment import run_experiment
    from raymlx.report import LiveReport
    from raymlx.runtime import BackgroundRuntime
    from raymlx.spec_io import load_spec

    loaded = load_spec(spec, overrides=_override_strings(overrides))
    runtime = BackgroundRuntime(loaded.spec.runtime, address=address, base_dir=loaded.base_dir, verbose=verbose)
    try:
        frame = run_checks(loaded)
        assert frame is not None  # read_data is on
        with LiveReport(loaded, frame) as report:
            result = run_experiment(loaded, frame, runtime=runtime, verbose=verbose, resume=resume,
                                    on_model_end=report.on_model_end)
            if result.champion_uri:  # as the command: no report of a run where every trial failed
                report.finish(result)
        return result
    finally:
        runtime.shutdown()


def load_champion(spec: str | Path | None = None, *, model_uri: str | None = None,
                  tracking_uri: str | None = None) -> ServedPredictor:
    """The registered champion of a spec (or any model raymlx logged), ready to predict and forecast.

    Args:
        spec: Path of the spec whose champion to load (its ``tracking.uri`` and registered model name).
        model_uri: An MLflow model URI instead (``models:/NAME@champion``, ``runs:/ID/model``).
        tracking_uri: The MLflow store; default: the spec's, else ``$MLFLOW_TRACKING_URI``.

    Returns:
        The champion's fitted pipeline and model: ``predict(rows)`` on raw rows,
        ``forecast(horizon, history=..., future=...)`` for a forecasting champion.

    Raises:
        raymlx.errors.UserInputError: When neither a spec nor a model URI is given, or the model is not raymlx's.
    """
    import mlflow

    from raymlx.champion import CHAMPION_ALIAS, ChampionModel
    from raymlx.errors import UserInputError

    if spec is not None:
        from raymlx.spec_io import load_spec
        from raymlx.store import resolve_tracking_uri

        loaded = load_spec(spec)
        tracking_uri = tracking_uri or resolve_tracking_uri(loaded.spec.tracking.uri, loaded.base_dir)
        model_uri = model_uri or f"models:/{loaded.spec.registered_model_name}@{CHAMPION_ALIAS}"
    if model_uri is None:
        raise UserInputError("load_champion needs a spec or a model_uri")
    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
    python_model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if not isinstance(python_model, ChampionModel):
        raise UserInputError(f"{model_uri} is not a model raymlx logged ({type(python_model).__name__})")
    return python_model.predictor

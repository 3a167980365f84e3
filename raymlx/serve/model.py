"""The served model: which registered version a URI names, loading it, and answering on data frames.

Nothing here imports Ray or FastAPI: a replica of the Serve application holds one
:class:`ServedModel`, and so could any other server.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from raymlx.champion import ChampionModel, ServedPredictor
from raymlx.errors import UserInputError
from raymlx.serve.schema import Column, frame_columns, signature_columns

__all__ = ["ModelRef", "ModelNotFound", "ServedModel", "resolve_model", "nullable_columns", "to_json_values"]

logger = logging.getLogger(__name__)


class ModelNotFound(UserInputError):
    """The model URI names no model in the tracking store."""


@dataclass(frozen=True)
class ModelRef:
    """A model URI pinned to one version, with where it came from.

    Attributes:
        uri: What was asked for (``models:/NAME@champion``, ``runs:/ID/model``, ...).
        pinned_uri: The same model, fixed to one version (``models:/NAME/7``) so every replica loads it.
        name: Registered model name, if any.
        version: Registered version, if any.
        alias: The alias asked for, if any.
        run_id: Run that logged the model, if known.
        tracking_uri: Store the model lives in.
    """

    uri: str
    pinned_uri: str
    tracking_uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None


def _split_registered(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` as (name, alias, version)."""
    body = uri[len("models:/"):].strip("/")
    if "@" in body:
        name, _, alias = body.partition("@")
        return name, alias, None
    name, _, version = body.rpartition("/")
    if not name or not version.isdigit():
        return body, None, None  # a logged model id (models:/m-...) rather than a registered one
    return name, None, version


def resolve_model(uri: str, *, tracking_uri: str) -> ModelRef:
    """Pin a model URI to one version, reading the registry.

    Raises:
        ModelNotFound: When the registry has no such model, alias or version.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    if uri.startswith("runs:/"):
        return ModelRef(uri, uri, tracking_uri, run_id=uri[len("runs:/"):].split("/")[0])
    if not uri.startswith("models:/"):
        return ModelRef(uri, uri, tracking_uri)
    name, alias, version = _split_registered(uri)
    try:
        if alias is None and version is None:
            return ModelRef(uri, uri, tracking_uri)
        found = (client.get_model_version_by_alias(name, alias) if alias
                 else client.get_model_version(name, str(version)))
    except MlflowException as exc:
        raise ModelNotFound(f"{uri}: no such model in {tracking_uri} ({exc.message})") from None
    return ModelRef(uri, f"models:/{name}/{found.version}", tracking_uri, name, str(found.version), alias,
                    found.run_id)


def to_json_values(values: np.ndarray) -> list:
    """Plain JSON values: NaN and infinities become ``null``, numpy scalars Python ones."""
    out = np.asarray(values).tolist()
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in out]


def nullable_columns(model, columns: list[Column], example: pd.DataFrame | None) -> list[Column]:
    """Mark the columns in which the model takes a missing value (the signature's optional ones,
    and those where predicting the input example with that column missing gives finite numbers)."""
    if example is None or example.empty:
        return columns
    row = example.head(1)
    marked = []
    for column in columns:
        ok = column.nullable or (column.type in ("double", "float") and _takes_missing(model, row, column.name))
        marked.append(Column(column.name, column.type, ok))
    return marked


def _takes_missing(model, row: pd.DataFrame, name: str) -> bool:
    probe = row.copy()
    probe[name] = np.nan
    try:
        out = np.asarray(model.predict(probe), dtype=float)
    except Exception:  # noqa: BLE001 - any failure means: this model cannot take it
        return False
    return bool(np.isfinite(out).all())


def _unchanged_by_schema(signature) -> list[tuple[str, tuple]] | None:
    """Per input column of a column signature, its name and the dtypes on which MLflow's schema
    enforcement returns the column as it is (``None`` for any other signature)."""
    from mlflow.types import DataType

    if signature is None or signature.inputs is None or not signature.inputs.has_input_names():
        return None
    if not all(isinstance(spec.type, DataType) for spec in signature.inputs.inputs):
        return None
    return [(spec.name, (spec.type.to_numpy(), spec.type.to_pandas())) for spec in signature.inputs.inputs]


@dataclass
class ServedModel:
    """A loaded model and what the HTTP layer needs to know about it.

    A raymlx champion is called directly on a frame that already has the signature's
    columns, in order, each of the type MLflow's schema enforcement would leave as it is
    (what :func:`raymlx.serve.app.records_frame` makes): the same call and answers as
    ``pyfunc.predict``, without rebuilding the frame column by column first.
    """

    ref: ModelRef
    pyfunc: Any
    columns: list[Column]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        python_model = self.python_model
        self._champion_model = python_model if isinstance(python_model, ChampionModel) else None
        self._schema = _unchanged_by_schema(self.pyfunc.metadata.signature) if self._champion_model else None

    @classmethod
    def load(cls, ref: ModelRef) -> ServedModel:
        """Load the pinned model and probe which columns may be missing."""
        import mlflow

        mlflow.set_tracking_uri(ref.tracking_uri)
        pyfunc = mlflow.pyfunc.load_model(ref.pinned_uri)
        example = _input_example(pyfunc)
        columns = nullable_columns(pyfunc, signature_columns(pyfunc.metadata.signature), example)
        return cls(ref, pyfunc, columns, _metadata(ref, pyfunc, columns))

    @property
    def python_model(self) -> Any:
        try:
            return self.pyfunc.unwrap_python_model()
        except Exception:  # noqa: BLE001 - not a python-function model (a flavor's own loader)
            return None

    @property
    def predictor(self) -> ServedPredictor | None:
        """The raymlx champion's fitted predictor, or ``None`` for another kind of model."""
        return self._champion_model.predictor if self._champion_model is not None else None

    @property
    def can_forecast(self) -> bool:
        predictor = self.predictor
        return predictor is not None and predictor.history is not None

    @property
    def classes(self) -> list | None:
        """Class labels when the model gives probabilities."""
        model = self.predictor.model if self.predictor is not None else None
        if model is None or not callable(getattr(model, "predict_proba", None)):
            return None
        try:
            return list(model.classes_)
        except AttributeError:
            return None

    def _champion(self) -> ServedPredictor:
        if self.predictor is None:
            raise TypeError(f"{self.ref.pinned_uri} is not a raymlx champion")
        return self.predictor

    def history_columns(self) -> list[Column]:
        """Columns of the forecasting history besides the time (the target included)."""
        history = self._champion().history
        return frame_columns(dict(history.dtypes)) if history is not None else []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """What ``mlflow.pyfunc.load_model(uri).predict(frame)`` returns.

        Raises:
            ValueError: When MLflow finds the frame does not fit the model's signature.
        """
        from mlflow.exceptions import MlflowException

        if self._champion_model is not None and self._fits_schema(frame):
            return np.asarray(self._champion_model.predict(None, frame))
        try:
            return np.asarray(self.pyfunc.predict(frame))
        except MlflowException as exc:
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                raise
            reason = exc.message.split("Error: ", 1)[-1]  # not the frame and schema it quotes first
            raise ValueError(" ".join(reason.split())[:300]) from exc

    def _fits_schema(self, frame: pd.DataFrame) -> bool:
        """Whether MLflow's schema enforcement would hand the model ``frame`` as it is."""
        schema = self._schema
        if schema is None or len(frame.columns) != len(schema):
            return False
        return all(name == column and dtype in types
                   for (name, types), column, dtype in zip(schema, frame.columns, frame.dtypes))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        predictor = self._champion()
        return np.asarray(predictor.model.predict_proba(predictor.features(frame)))

    def future_columns(self) -> list[Column]:
        """Columns whose values over the forecast window a forecast needs (each required)."""
        names = list(self.predictor.future_columns) if self.predictor is not None else []
        return [Column(c.name, c.type) for c in self.history_columns() if c.name in names]

    def forecast(self, horizon: int, *, history: pd.DataFrame | None,
                 future: pd.DataFrame | None = None) -> pd.Series:
        """What ``unwrap_python_model().forecast(horizon, history=..., future=...)`` returns."""
        if future is None:  # a champion from before future columns takes no such argument
            return self.python_model.forecast(horizon, history=history)
        return self.python_model.forecast(horizon, history=history, future=future)


def _input_example(pyfunc) -> pd.DataFrame | None:
    try:
        example = pyfunc.input_example
    except Exception:  # noqa: BLE001 - missing or unreadable example: no probing
        return None
    return example if isinstance(example, pd.DataFrame) else None


def _metadata(ref: ModelRef, pyfunc, columns: list[Column]) -> dict[str, Any]:
    info = pyfunc.metadata
    try:
        python_model = pyfunc.unwrap_python_model()
    except Exception:  # noqa: BLE001 - a flavor's own model: no raymlx metadata
        python_model = None
    champion = dict(getattr(python_model, "metadata", None) or {})
    return {
        "registered_model": ref.name, "version": ref.version, "alias": ref.alias, "model_uri": ref.pinned_uri,
        "run_id": ref.run_id or info.run_id, "trained_at": str(info.utc_time_created) if info.utc_time_created else None,
        "model": champion.get("model"), "task": champion.get("task"), "target": champion.get("target"),
        "metric": champion.get("metric"), "score": champion.get("score"), "params": champion.get("params", {}),
        "inputs": [{"name": c.name, "type": c.type, "nullable": c.nullable} for c in columns],
    }

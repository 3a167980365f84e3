"""Request and response models built from a model's MLflow signature, so clients see its real columns.

Each input column of the signature becomes a field of a ``Record`` model that
forbids unknown keys and checks types strictly (a string is not a number, ``1.5``
is not an integer; an integer is a valid real number). JSON ``null`` is a missing
value and is accepted only in columns the model was found to cope with (see
:func:`raymlx.serve.model.nullable_columns`); ``NaN`` and ``Infinity`` are never
accepted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

__all__ = ["Column", "signature_columns", "frame_columns", "record_model", "predict_models", "forecast_models",
           "python_type", "ErrorResponse", "error_responses"]

_TYPES: dict[str, Any] = {
    "double": float, "float": float, "long": int, "integer": int, "boolean": bool,
    "string": str, "datetime": dt.datetime, "binary": str,
}
_STRICT = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True)
class Column:
    """One input column: its name, its MLflow type name and whether ``null`` is accepted."""

    name: str
    type: str
    nullable: bool = False


def signature_columns(signature) -> list[Column]:
    """The named input columns of an MLflow signature (empty for a tensor signature or none)."""
    if signature is None or signature.inputs is None or not signature.inputs.has_input_names():
        return []
    return [Column(spec.name, getattr(spec.type, "name", str(spec.type)), not spec.required)
            for spec in signature.inputs.inputs]


def frame_columns(dtypes: dict[str, Any]) -> list[Column]:
    """Columns of a pandas frame (a forecasting champion's history), each nullable."""
    names = {"f": "double", "i": "long", "u": "long", "b": "boolean", "M": "datetime"}
    return [Column(name, names.get(dtype.kind, "string"), True) for name, dtype in dtypes.items()]


def python_type(column: Column) -> Any:
    """The field type of a column: strict, finite for numbers, optional when nullable."""
    base = _TYPES.get(column.type, Any)
    if base is float:
        base = Annotated[float, Field(allow_inf_nan=False)]
    elif base is dt.datetime:  # JSON has no datetime: RFC 3339 strings are parsed (and nothing else)
        base = Annotated[dt.datetime, Field(strict=False), BeforeValidator(_time_string)]
    return base | None if column.nullable else base


def _time_string(value: Any) -> Any:
    if not isinstance(value, (str, dt.datetime)):
        raise ValueError("a date-time must be an RFC 3339 string, e.g. 2024-01-31T00:00:00Z")
    return value


def record_model(name: str, columns: list[Column], *, doc: str) -> type[BaseModel]:
    """A pydantic model of one input row with one field per column."""
    fields = {c.name: (python_type(c), Field(... if not c.nullable else None, description=f"{c.type}"
                                             + (", null for missing" if c.nullable else "")))
              for c in columns}
    return create_model(name, __config__=_STRICT, __doc__=doc, **fields)


def predict_models(columns: list[Column], *, max_records: int, classes: list | None
                   ) -> tuple[type[BaseModel], type[BaseModel]]:
    """The request and response models of ``POST /predict``."""
    record = record_model("Record", columns, doc="One input row; keys are the model's input columns.")
    request = create_model(
        "PredictRequest", __config__=_STRICT, __doc__="Rows to predict.",
        records=(list[record], Field(min_length=1, max_length=max_records, description="Input rows.")))
    response_fields: dict[str, Any] = {
        "predictions": (list[Any], Field(description="One prediction per row, in order; null where undefined.")),
        "model_version": (str | None, Field(description="Registered version that answered.")),
    }
    if classes:
        response_fields["probabilities"] = (list[dict[str, float]], Field(
            description=f"Per row, the probability of each class ({', '.join(map(str, classes))})."))
    return request, create_model("PredictResponse", **response_fields)


def forecast_models(history: list[Column], *, time_column: str, target: str, max_horizon: int, max_records: int,
                    future: list[Column] | None = None) -> tuple[type, type]:
    """The request and response models of ``POST /forecast``; ``future`` makes the future rows required."""
    time = Column(time_column, "datetime")
    past = record_model("HistoryRecord", [time, *history],
                        doc="One past row: its time, the target and the data's other columns.")
    extra: dict[str, Any] = {}
    if future:
        ahead = record_model("FutureRecord", [time, *future],
                             doc="One forecast time and the values of the columns known ahead at that time.")
        extra["future"] = (list[ahead], Field(min_length=1, max_length=max_records, description=(
            f"The values of {', '.join(c.name for c in future)} at every forecast time (known ahead).")))
    request = create_model(
        "ForecastRequest", __config__=_STRICT, __doc__="What to forecast.", **extra,
        horizon=(int, Field(ge=1, le=max_horizon, description=(
            f"Steps to forecast after the end of the history (at most {max_horizon}, the horizon it was validated on)."))),
        history=(list[past] | None, Field(None, min_length=1, max_length=max_records, description=(
            "Recent rows to forecast from, oldest first; default: the data the champion was trained on."))),
    )
    point = create_model("ForecastPoint", **{time_column: (dt.datetime, ...), target: (float | None, ...)})
    response = create_model("ForecastResponse", forecast=(list[point], ...), model_version=(str | None, None))
    return request, response


class ErrorResponse(BaseModel):
    """What a refused request is answered: what is wrong, and for a 422 where."""

    error: str = Field(description="What is wrong with the request, in one line.")
    detail: list[dict[str, Any]] | None = Field(None, description="Each validation error: loc, msg and type.")


def _error_response(description: str, *, text: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"model": ErrorResponse, "description": description}
    if text:  # beside the JSON one: Ray Serve's own answer when every replica's queue is full
        answer["content"] = {"text/plain": {"schema": {"type": "string"}}}
    return answer


def error_responses(*, body: bool) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, for its OpenAPI ``responses``; ``body``: the route takes a JSON body."""
    responses = {
        400: _error_response("The request is not HTTP/1.1 or its body not parseable JSON."),
        414: _error_response("The request line is over its size limit."),
        431: _error_response("Too many header fields, or too many bytes of them."),
        503: _error_response("Overloaded, or no replica could answer: try again.", text=True),
    }
    if body:
        responses[413] = _error_response("The body is over the size limit.")
        responses[422] = _error_response("The body does not fit the model's inputs, or the model refuses the rows.")
    return dict(sorted(responses.items()))

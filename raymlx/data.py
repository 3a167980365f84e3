"""Loading the data set a spec names, and checking it has what the spec says."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import fsspec
import numpy as np
import pandas as pd

from raymlx.errors import DataError, shorten
from raymlx.registry import suggest
from raymlx.spec import DataSpec

__all__ = ["resolve_uri", "read_table", "prepare_frame", "missing_columns", "stray_text", "row_place"]

NUMERIC_SHARE = 0.9  # a column at least this much numbers is a numeric column; its other values are mistakes


def resolve_uri(uri: str, base_dir: str | Path) -> str:
    """Make a local relative path absolute against the spec's folder; leave URLs alone."""
    if "://" in uri:
        return uri
    return str((Path(base_dir) / uri).resolve())


def _format(uri: str, declared: str | None) -> str:
    if declared:
        return declared
    suffixes = PurePosixPath(uri.split("?")[0]).suffixes
    return "parquet" if ".parquet" in suffixes or ".pq" in suffixes else "csv"


def read_table(uri: str, *, fmt: str | None = None, read_options: dict | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file from a path or any fsspec URL.

    Raises:
        DataError: When the file is missing, unreachable or unparsable.
    """
    kind = _format(uri, fmt)
    try:
        with fsspec.open(uri, "rb", compression="infer") as handle:
            if kind == "parquet":
                return pd.read_parquet(handle, **(read_options or {}))
            return pd.read_csv(handle, **(read_options or {}))
    except FileNotFoundError:
        raise DataError(f"data file not found: {uri}") from None
    except ImportError as exc:
        raise DataError(f"cannot read {uri}: {exc} (install the fsspec backend for this URL, e.g. s3fs or gcsfs)") from None
    except Exception as exc:
        raise DataError(f"cannot read {uri} as {kind}: {type(exc).__name__}: {exc}") from None


def missing_columns(frame: pd.DataFrame, data: DataSpec) -> dict[str, str]:
    """Map each spec field naming an absent column to a message saying so."""
    named = {"target": data.target, "time_column": data.time_column}
    named.update({f"columns.{i}": c for i, c in enumerate(data.columns or [])})
    named.update({f"future_columns.{i}": c for i, c in enumerate(data.future_columns)})
    present = [str(c) for c in frame.columns]
    return {
        field: f"column '{column}' not in the data{suggest(column, present)} (columns: {', '.join(present)})"
        for field, column in named.items() if column is not None and column not in frame.columns
    }


def prepare_frame(frame: pd.DataFrame, data: DataSpec, *, uri: str, forecasting: bool) -> pd.DataFrame:
    """Keep the spec's columns, drop rows without a target, parse (and for forecasting index by) time.

    Raises:
        DataError: For absent columns, unparsable or duplicate times, or no rows.
    """
    if missing := missing_columns(frame, data):
        raise DataError("; ".join(f"data.{k}: {v}" for k, v in missing.items()))
    if data.columns is not None:
        keep = [c for c in [data.time_column, *data.columns, *data.future_columns, data.target] if c is not None]
        frame = frame[list(dict.fromkeys(keep))]
    if frame[data.target].isna().any():  # dropna copies the whole frame even when no row goes
        frame = frame.dropna(subset=[data.target])
    if frame.empty:
        raise DataError(f"{uri}: no rows with a value in the target column '{data.target}'")
    if data.time_column is not None:
        frame = _parse_time(frame, data.time_column, uri)
        if forecasting:
            frame = frame.set_index(data.time_column).sort_index()
    if forecasting:
        return frame
    frame = frame.copy(deep=False)  # rows numbered 0..n-1 on the same columns: reset_index copies every one
    frame.index = pd.RangeIndex(len(frame))
    return frame


def row_place(uri: str, row: object, *, named: bool = True) -> str:
    """Where a raw row is, for a person: its line in a CSV file (after the header), else its 0-based row number."""
    of = f" of {uri}" if named else ""
    if isinstance(row, (int, np.integer)) and _format(uri, None) == "csv":
        return f"line {int(row) + 2}{of}"
    return f"row {row}{of}"


def stray_text(frame: pd.DataFrame, data: DataSpec, *, uri: str) -> list[str]:
    """Text in columns that are otherwise numbers (``abc`` among a column of floats): one message per column."""
    found = []
    for column in frame.select_dtypes(include=["object", "string"]).columns:
        if column == data.time_column:
            continue  # told apart by _parse_time
        values = frame[column].dropna()
        numbers = pd.to_numeric(values, errors="coerce")
        if len(values) and numbers.notna().mean() >= NUMERIC_SHARE and numbers.isna().any():
            bad = values[numbers.isna()]
            found.append(f"column '{column}' holds numbers but also '{shorten(str(bad.iloc[0]), 60)}' at "
                         f"{row_place(uri, bad.index[0])} ({len(bad)} such value{'s' if len(bad) > 1 else ''}); "
                         f"fix it, or leave the cell empty for a missing value")
    return found


def _parse_time(frame: pd.DataFrame, column: str, uri: str) -> pd.DataFrame:
    try:
        times = pd.to_datetime(frame[column])
    except (ValueError, TypeError):
        parsed = pd.to_datetime(frame[column], errors="coerce", format="mixed")
        bad = frame[column][parsed.isna() & frame[column].notna()]
        where = (f": '{shorten(str(bad.iloc[0]), 60)}' at {row_place(uri, bad.index[0], named=False)}" if len(bad)
                 else " in the same format")
        raise DataError(f"{uri}: time column '{column}' does not parse as dates{where}") from None
    if times.duplicated().any():
        first = times[times.duplicated()].iloc[0]
        raise DataError(f"{uri}: time column '{column}' has duplicate times, first {first}")
    return frame.assign(**{column: times})

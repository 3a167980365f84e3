"""Reading the data set from paths and URLs, and shaping it as the spec says."""

from __future__ import annotations

import functools
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raymlx.data import prepare_frame, read_table, resolve_uri
from raymlx.errors import DataError
from raymlx.spec import DataSpec

# Deliberately out of time order, with one row that has no target.
ROWS = pd.DataFrame({
    "date": ["2024-01-03", "2024-01-01", "2024-01-04", "2024-01-02", "2024-01-05"],
    "temperature": [3.0, 1.0, 4.0, 2.0, 5.0],
    "humidity": [30.0, 10.0, 40.0, 20.0, 50.0],
    "wind": [0.3, 0.1, 0.4, 0.2, 0.5],
    "sales": [103.0, 101.0, 104.0, 102.0, None],
})
COMPLETE = ROWS.dropna(subset=["sales"]).reset_index(drop=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A spec folder with the rows as data/readings.csv and data/readings.parquet."""
    (tmp_path / "data").mkdir()
    ROWS.to_csv(tmp_path / "data" / "readings.csv", index=False)
    ROWS.to_parquet(tmp_path / "data" / "readings.parquet", index=False)
    return tmp_path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def http_url(project: Path):
    """A real HTTP server on 127.0.0.1 serving the project folder; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(project)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def load(project: Path, *, forecasting: bool = False, **data) -> pd.DataFrame:
    data.setdefault("target", "sales")
    spec = DataSpec(**data)
    uri = resolve_uri(spec.uri, project)
    raw = read_table(uri, fmt=spec.format, read_options=spec.read_options)
    return prepare_frame(raw, spec, uri=uri, forecasting=forecasting)


# ---- where the data comes from ---------------------------------------------------------------

def test_relative_path_is_relative_to_the_spec_folder_not_the_working_directory(project, tmp_path_factory,
                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    pd.testing.assert_frame_equal(load(project, uri="data/readings.csv"), COMPLETE)


def test_resolve_uri_makes_a_relative_path_absolute(project):
    assert resolve_uri("data/../data/readings.csv", project) == str(project.resolve() / "data" / "readings.csv")


@pytest.mark.parametrize("uri", [
    pytest.param("file:///srv/data.csv", id="file"),
    pytest.param("http://127.0.0.1:8000/data.csv", id="http"),
    pytest.param("s3://bucket/key/data.parquet", id="s3"),
])
def test_resolve_uri_leaves_urls_alone(uri, project):
    assert resolve_uri(uri, project) == uri


def test_file_url(project):
    uri = (project / "data" / "readings.csv").as_uri()
    pd.testing.assert_frame_equal(load(project, uri=uri), COMPLETE)


def test_http_url_from_a_real_server(project, http_url):
    pd.testing.assert_frame_equal(load(project, uri=f"{http_url}/data/readings.csv"), COMPLETE)


def test_http_url_of_a_missing_file(http_url):
    uri = f"{http_url}/data/absent.csv"
    with pytest.raises(DataError, match=re.escape(f"data file not found: {uri}")):
        read_table(uri)


def test_parquet_by_suffix(project):
    pd.testing.assert_frame_equal(load(project, uri="data/readings.parquet"), COMPLETE)


def test_parquet_by_declared_format(project):
    (project / "data" / "readings.parquet").rename(project / "data" / "readings.bin")
    pd.testing.assert_frame_equal(load(project, uri="data/readings.bin", format="parquet"), COMPLETE)


def test_declared_format_wins_over_the_suffix(project):
    """A CSV file declared as Parquet is read as Parquet, and fails as such."""
    path = project.resolve() / "data" / "readings.csv"
    with pytest.raises(DataError, match=re.escape(f"cannot read {path} as parquet: ")):
        load(project, uri="data/readings.csv", format="parquet")


def test_read_options_reach_pandas(project):
    ROWS.to_csv(project / "data" / "semicolons.csv", index=False, sep=";")
    frame = load(project, uri="data/semicolons.csv", read_options={"sep": ";"})
    pd.testing.assert_frame_equal(frame, COMPLETE)


@pytest.mark.parametrize("as_url", [pytest.param(False, id="relative-path"), pytest.param(True, id="file-url")])
def test_missing_file(as_url, project):
    absolute = project.resolve() / "data" / "absent.csv"
    uri = absolute.as_uri() if as_url else "data/absent.csv"
    shown = uri if as_url else str(absolute)
    with pytest.raises(DataError, match=f"^{re.escape(f'data file not found: {shown}')}$"):
        load(project, uri=uri)


# ---- columns the spec names --------------------------------------------------------------------

COLUMNS = "(columns: date, temperature, humidity, wind, sales)"


@pytest.mark.parametrize(("data", "message"), [
    pytest.param({"target": "sale"}, f"data.target: column 'sale' not in the data; did you mean 'sales'? {COLUMNS}",
                 id="target"),
    pytest.param({"time_column": "dates"},
                 f"data.time_column: column 'dates' not in the data; did you mean 'date'? {COLUMNS}", id="time-column"),
    pytest.param({"columns": ["wind", "humidty"]},
                 f"data.columns.1: column 'humidty' not in the data; did you mean 'humidity'? {COLUMNS}",
                 id="column"),
    pytest.param({"columns": ["pressure"]}, f"data.columns.0: column 'pressure' not in the data {COLUMNS}",
                 id="no-close-name"),
    pytest.param({"target": "sale", "columns": ["humidty"]},
                 f"data.target: column 'sale' not in the data; did you mean 'sales'? {COLUMNS}; "
                 f"data.columns.0: column 'humidty' not in the data; did you mean 'humidity'? {COLUMNS}",
                 id="several"),
])
def test_absent_columns(data, message, project):
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        load(project, uri="data/readings.csv", **data)


def test_columns_keep_time_columns_and_target_in_that_order(project):
    frame = load(project, uri="data/readings.csv", time_column="date", columns=["wind", "temperature"])
    assert list(frame.columns) == ["date", "wind", "temperature", "sales"]
    assert frame["wind"].tolist() == COMPLETE["wind"].tolist()


def test_columns_naming_the_target_do_not_repeat_it(project):
    frame = load(project, uri="data/readings.csv", columns=["sales", "humidity"])
    assert list(frame.columns) == ["sales", "humidity"]


def test_without_columns_every_column_stays(project):
    assert list(load(project, uri="data/readings.csv").columns) == list(ROWS.columns)


# ---- rows and times ------------------------------------------------------------------------------

def test_rows_without_target_are_dropped_and_the_index_renumbered(project):
    frame = load(project, uri="data/readings.csv")
    assert frame["sales"].notna().all()
    assert list(frame.index) == [0, 1, 2, 3]


def test_no_row_with_a_target(project):
    ROWS.assign(sales=None).to_csv(project / "data" / "empty.csv", index=False)
    path = project.resolve() / "data" / "empty.csv"
    with pytest.raises(DataError, match=re.escape(f"{path}: no rows with a value in the target column 'sales'")):
        load(project, uri="data/empty.csv")


def test_time_column_is_parsed_and_row_order_kept_without_forecasting(project):
    frame = load(project, uri="data/readings.csv", time_column="date")
    assert pd.api.types.is_datetime64_any_dtype(frame["date"])
    assert frame["date"].tolist() == pd.to_datetime(COMPLETE["date"]).tolist()
    assert isinstance(frame.index, pd.RangeIndex)


def test_forecasting_frame_is_indexed_by_sorted_time(project):
    frame = load(project, uri="data/readings.csv", time_column="date", forecasting=True)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert frame.index.name == "date"
    assert list(frame.index) == list(pd.date_range("2024-01-01", "2024-01-04", freq="D"))
    assert "date" not in frame.columns
    # each row kept its own values while being sorted
    assert frame["sales"].tolist() == [101.0, 102.0, 103.0, 104.0]
    assert frame["temperature"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_unparsable_time_column(project):
    ROWS.assign(date=["2024-01-03", "2024-01-01", "yesterday", "2024-01-02", "2024-01-05"]).to_csv(
        project / "data" / "bad_dates.csv", index=False)
    path = project.resolve() / "data" / "bad_dates.csv"
    with pytest.raises(DataError, match=re.escape(f"{path}: time column 'date' does not parse as dates: ")):
        load(project, uri="data/bad_dates.csv", time_column="date", forecasting=True)


def test_duplicate_times(project):
    ROWS.assign(date=["2024-01-03", "2024-01-01", "2024-01-02", "2024-01-01", "2024-01-05"]).to_csv(
        project / "data" / "twice.csv", index=False)
    path = project.resolve() / "data" / "twice.csv"
    message = f"{path}: time column 'date' has duplicate times, first 2024-01-01 00:00:00"
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        load(project, uri="data/twice.csv", time_column="date", forecasting=True)


def test_duplicate_times_only_among_rows_without_target_are_fine(project):
    """Rows without a target are dropped before times are checked."""
    ROWS.assign(date=["2024-01-03", "2024-01-01", "2024-01-04", "2024-01-02", "2024-01-02"]).to_csv(
        project / "data" / "dup_dropped.csv", index=False)
    frame = load(project, uri="data/dup_dropped.csv", time_column="date", forecasting=True)
    assert frame.index.is_unique and len(frame) == 4


def test_complete_rows_are_kept_without_a_copy_of_the_data():
    """Rows that all have a target keep their columns' memory (a data set of a million rows is not copied twice
    more before its features are computed), numbered 0..n-1 whatever their index was; the file's frame stays as
    it was."""
    raw = COMPLETE.drop(columns="date").set_axis([10, 11, 12, 13])
    frame = prepare_frame(raw, DataSpec(uri="x.csv", target="sales"), uri="x.csv", forecasting=False)
    pd.testing.assert_frame_equal(frame, COMPLETE.drop(columns="date"))
    assert all(np.shares_memory(frame[c].to_numpy(), raw[c].to_numpy()) for c in frame.columns)
    assert list(raw.index) == [10, 11, 12, 13]

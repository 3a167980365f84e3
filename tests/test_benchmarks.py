"""The benchmarks still run: each at its smallest size, as the README runs it, so a changed signature fails here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_benchmark(script: str, *args: str, cwd) -> str:
    """Run ``benchmarks/<script>`` with this checkout's raymlx; its output, or fail with the end of its errors."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_tune_benchmark_runs(tmp_path):
    out = tmp_path / "tune.json"
    run_benchmark("tune/run.py", "--trials", "1", "--models", "ridge", "--only", "raymlx", "optuna1", "randomized",
                  "--json", str(out), cwd=tmp_path)
    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows] == ["raymlx tune", "optuna loop (1 process)",
                                         "RandomizedSearchCV n_jobs=2, scikit-learn"]
    assert all(r["models"] == ["ridge"] and r["trials"] == 1 and math.isfinite(r["best"]) for r in rows), rows
    assert [r["best"] for r in rows] == pytest.approx([rows[0]["best"]] * 3, rel=1e-9)  # one configuration, one score


@pytest.mark.slow
def test_cheap_trial_benchmark_runs(tmp_path):
    out = tmp_path / "cheap.json"
    run_benchmark("tune/cheap.py", "--trials", "1", "--rows", "300", "--models", "knn", "--only", "raymlx",
                  "randomized", "--json", str(out), cwd=tmp_path)
    rows = json.loads(out.read_text())["1"]
    assert [r["name"] for r in rows] == ["raymlx tune", "RandomizedSearchCV n_jobs=2, scikit-learn"]
    assert all(r["models"] == ["knn"] and r["trials"] == 1 and 0.5 < r["best"] <= 1.0 for r in rows), rows
    assert rows[0]["best"] == pytest.approx(rows[1]["best"], rel=1e-9)  # one configuration, one accuracy


@pytest.mark.slow
def test_serve_benchmark_runs(tmp_path):
    out = tmp_path / "serve.json"
    run_benchmark("serve/run.py", "--seconds", "1", "--workload", "light (mean)", "--servers", "raymlx", "uvicorn",
                  "--skip-autoscaling", "--json", str(out), cwd=tmp_path)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["server"], r["concurrency"]) for r in rows] == [
        ("raymlx serve", 1), ("raymlx serve", 16), ("FastAPI + uvicorn", 1), ("FastAPI + uvicorn", 16)]
    assert all(r["rps"] > 0 and r["non_200"] == 0 and r["server_cpu_us"] > 0 and r["client_cpu_us"] > 0
               for r in rows), rows
    assert [r["batch"] >= 1 for r in rows[:2]] == [True, True], "raymlx says how many requests a model call answered"
    assert all(math.isnan(r["batch"]) for r in rows[2:]), "uvicorn's plain app sends no batch size"


@pytest.mark.slow
def test_scale_benchmark_runs(tmp_path):
    out = tmp_path / "scale.json"
    # The alternatives are the tune benchmark's own (checked above, same configurations): raymlx alone here.
    run_benchmark("tune/scale.py", "--sizes", "1000", "--trials", "1", "--only", "raymlx", "--json", str(out),
                  cwd=tmp_path)
    rows = json.loads(out.read_text())
    assert [(r["name"], r["rows"]) for r in rows] == [("raymlx tune", 1000)]
    assert rows[0]["trials"] == 3 and math.isfinite(rows[0]["best"]) and rows[0]["peak_pss_mib"] > 0, rows
    assert rows[0]["store_mib"] > 0  # the object store was asked while raymlx ran
    timeline = rows[0]["timeline"]  # where the peak happens: samples in time, PSS by process
    assert len(timeline) >= 3 and [s["t"] for s in timeline] == sorted(s["t"] for s in timeline), timeline
    assert max(s.get("store", 0) for s in timeline) > 0 and any(len(s["pss_by_process"]) > 2 for s in timeline)
    assert all(s["anon_pss_by_process"].keys() == s["pss_by_process"].keys() for s in timeline)
    # CPU seconds of the whole tree, Ray's processes included: more than the trials' fits alone
    assert rows[0]["cpu_s"] > rows[0]["fit_s"] and "raylet" in rows[0]["cpu_by_process"], rows[0]["cpu_by_process"]


@pytest.mark.slow
def test_model_call_benchmark_runs(tmp_path):
    printed = run_benchmark("serve/model_call.py", "--repeat", "1", cwd=tmp_path)
    microseconds = json.loads(printed.splitlines()[-1])
    assert set(microseconds) == {"pyfunc.predict", "served model call", "ASGI /predict", "batch of 16, a request"}
    assert all(0 < value < 1e6 for value in microseconds.values()), microseconds

"""The private Ray and MLflow APIs raymlx uses (raymlx._compat): present in the installed Ray, and each fallback works.

A Ray upgrade that removes or changes one fails ``test_every_private_api_is_present``,
naming it; raymlx then runs on the public fallback until the guarded use is updated.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import ray

from raymlx import _compat


def test_every_private_api_is_present():
    missing = [name for name, present in _compat.private_apis().items() if not present]
    assert not missing, f"Ray {ray.__version__}: private APIs gone or changed: {missing} (see raymlx/_compat.py)"


def test_the_installed_ray_is_one_the_private_apis_were_checked_on():
    assert ".".join(ray.__version__.split(".")[:2]) in _compat.CHECKED_RAY


def test_only_the_compat_module_touches_private_apis():
    found = subprocess.run(["grep", "-rnE", r"_private|_internal|_raylet|mlflow\.utils", "raymlx", "benchmarks"],
                           capture_output=True, text=True, cwd=_root()).stdout.splitlines()
    outside = [line for line in found if not line.startswith("raymlx/_compat.py:")]
    assert not outside, outside


def _root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1])


def test_the_mlflow_metric_filter_falls_back_to_ray_s_rule(caplog):
    class NoPrivateFilter:
        pass

    values = {"rmse": 1.5, "count": 3, "flag": True, "name": "ridge", "missing": None, "text_number": "2.5"}
    with caplog.at_level(logging.WARNING, logger="raymlx._compat"):
        fallback = _compat.mlflow_metrics(NoPrivateFilter(), values)
    from ray.air._internal.mlflow import _MLflowLoggerUtil

    assert fallback == _compat.mlflow_metrics(_MLflowLoggerUtil(), values)
    assert fallback == {"rmse": 1.5, "count": 3.0, "flag": 1.0, "text_number": 2.5}
    assert "Ray's MLflow metric filter is not available" in caplog.text


def test_a_deployment_without_versions_is_deployed_without_one(caplog):
    class Deployment:  # a Serve whose options take no version
        def options(self, *, num_replicas: int = 1):
            return {"num_replicas": num_replicas}

    with caplog.at_level(logging.WARNING, logger="raymlx._compat"):
        options = _compat.versioned_deployment(Deployment(), version="abc", num_replicas=2)
    assert options == {"num_replicas": 2}
    assert "versioned deployments is not available" in caplog.text


def test_a_real_deployment_takes_the_version():
    from ray import serve

    @serve.deployment
    class Echo:
        def __call__(self, request):
            return "ok"

    assert _compat.versioned_deployment(Echo, version="v1", num_replicas=1).version == "v1"


def test_tune_s_actor_environment_is_the_one_raymlx_inherits():
    assert _compat.tune_actor_env_defaults() == {"PL_DISABLE_FORK": "1"}


@pytest.mark.parametrize(("probe", "modules"), [
    pytest.param("stop_monitor()", ("services", "worker"), id="stop-monitor"),
    pytest.param("prompt_node_wait().__enter__()", ("services", "worker"), id="node-wait"),
    pytest.param("loopback_node().__enter__()", ("ray_constants",), id="loopback-node"),
    pytest.param("lean_local_node(log_monitor=False).__enter__()", ("node",), id="lean-node"),
])
def test_a_missing_private_module_falls_back_without_failing(probe, modules):
    """Run the guarded call in a fresh interpreter where Ray's private module cannot be imported."""
    code = (
        "import sys, logging\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "import ray._private.node, ray._private.services, ray._private.worker\n"
        "from raymlx import _compat\n"
        f"for name in {modules!r}:\n"
        "    delattr(ray._private, name)\n"
        "    sys.modules['ray._private.' + name] = None\n"
        f"_compat.{probe}\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=_root(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "using the public API instead" in done.stderr



def test_a_loopback_node_is_asked_of_ray_in_the_driver_and_every_process_it_starts(monkeypatch):
    from ray._private import ray_constants

    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    before = ray_constants.ENABLE_RAY_CLUSTER
    with _compat.loopback_node():
        assert ray_constants.ENABLE_RAY_CLUSTER is False  # the driver: ray.init keeps 127.0.0.1 as the node's address
        assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # what the runtime's processes inherit
    assert ray_constants.ENABLE_RAY_CLUSTER is before
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ


def _schema(path) -> tuple[list, list]:
    """A store's tables and indexes, each as its name and its definition's parts (MLflow's migrations order a
    rebuilt table's constraints differently from one process to the next), and its schema revision."""
    import sqlite3

    with sqlite3.connect(path) as db:
        rows = db.execute("select type, name, sql from sqlite_master where name not like 'sqlite_%'")
        tables = sorted((kind, name, tuple(sorted(" ".join((sql or "").split()).split(", ")))) for kind, name, sql in rows)
        return tables, db.execute("select version_num from alembic_version").fetchall()


def test_a_new_sqlite_store_copied_from_an_empty_one_is_the_store_mlflow_makes(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first, project = tmp_path / "first", tmp_path / "project"
    first.mkdir(), project.mkdir()
    monkeypatch.chdir(first)  # the empty store is made for a first project, then copied for another
    _compat.empty_sqlite_store(f"sqlite:///{first / 'mlflow.db'}")
    assert list((tmp_path / "cache" / "raymlx").glob("mlflow-*-empty.db"))
    monkeypatch.chdir(project)  # where MLflow puts the default experiment's artifacts
    made, copied = project / "made.db", project / "copied.db"
    _compat.empty_sqlite_store(f"sqlite:///{copied}")
    assert copied.exists()
    stores = {}
    for path in (made, copied):
        client = MlflowClient(f"sqlite:///{path}")
        default = client.get_experiment("0")
        run = client.create_run(client.create_experiment("e"))
        client.log_metric(run.info.run_id, "score", 1.0)
        stores[path] = (default.name, default.artifact_location, _schema(path))
    assert stores[copied] == stores[made]  # same tables, indexes, schema revision and default experiment

    before = copied.read_bytes()
    _compat.empty_sqlite_store(f"sqlite:///{copied}")  # an existing store is left alone
    assert copied.read_bytes() == before
    _compat.empty_sqlite_store("http://127.0.0.1:5000")  # and any other store

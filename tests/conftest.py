"""Shared fixtures: one real local Ray runtime for the whole session, MLflow stores under tmp_path."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIABETES = ROOT / "examples" / "tabular" / "data" / "diabetes.csv"


@pytest.fixture(scope="session")
def ray_runtime():
    """A small local Ray runtime shared by every test that needs one."""
    import ray

    # A runtime of its own, as raymlx starts one, even where a `ray start` left another on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024,
             log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the diabetes data under data/."""
    (tmp_path / "data").mkdir()
    shutil.copy(DIABETES, tmp_path / "data" / "diabetes.csv")
    return tmp_path


@pytest.fixture(autouse=True)
def forget_user_modules(tmp_path_factory):
    """Forget the user files a test imported from its own project copy.

    A spec's file is imported under its stem (`features.py` as `features`) and a second file of that name
    is refused, as it would be in a user's process; tests copy the same example into many folders.
    """
    yield
    base = str(tmp_path_factory.getbasetemp().resolve())
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(base):
            del sys.modules[name]


# Fixtures that are cheap to make once per worker process; every other module- or session-scoped fixture is
# expensive (a tuned experiment, a served application, a cluster) and its tests share one worker.
MADE_IN_EVERY_WORKER = {"ray_runtime", "diabetes", "store", "tmp_path_factory", "worker_id", "testrun_uid"}


def _shared_fixture_home(item: pytest.Item) -> str | None:
    """Where the first expensive fixture wider than a test that ``item`` uses is defined (module or folder).

    A test may also name such a fixture in a parameter and ask for it with ``request.getfixturevalue``.
    """
    named = [value for value in getattr(item, "callspec", None) and item.callspec.params.values() or []
             if isinstance(value, str)]
    manager = item.session._fixturemanager
    for name in sorted(item.fixturenames) + named:
        definitions = manager.getfixturedefs(name, item) or ()
        wide = [d for d in definitions if d.scope in ("module", "package", "session")]
        if wide and name not in MADE_IN_EVERY_WORKER:
            return wide[-1].baseid or "tests"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``), tests that share an expensive fixture run in one worker."""
    for item in items:
        home = _shared_fixture_home(item)
        if home is not None:
            item.add_marker(pytest.mark.xdist_group(home))

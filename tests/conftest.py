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

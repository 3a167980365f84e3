"""The report's fork server imports what the refits of the spec's built-in models import, and only that."""

from __future__ import annotations

import importlib

from raymlx.report.live import first_fit_imports
from raymlx.spec_io import load_spec
from tests.conftest import ROOT


def test_the_forecasting_example_preloads_holt_winters_and_prophet_and_the_tabular_one_nothing():
    modules = first_fit_imports(load_spec(ROOT / "examples" / "temperature" / "specs.yaml").spec)
    assert modules == ["darts.models.forecasting.exponential_smoothing", "cmdstanpy"]
    for module in modules:  # names that import (the fork server passes over one that does not)
        importlib.import_module(module)
    assert first_fit_imports(load_spec(ROOT / "examples" / "tabular" / "specs.yaml").spec) == []

"""Resolving references: ``module:attr``, nested attributes, built-in short names and ``file.py:attr``."""

from __future__ import annotations

import importlib
import json
import pickle
import re
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
from sklearn.linear_model import LinearRegression

from raymlx.registry import UnresolvedReference, resolve, suggest
from raymlx.steps import Lags, StandardScale

DATA = Path(__file__).resolve().parent / "data"
UNIT = DATA / "unit"
STEPS = "raymlx.steps"


# Modules these tests create; only they are removed again (unloading library modules would break others).
OWN_MODULES = ("unit_code", "broken_on_import", "raising_module_for_registry", "needs_dependency_for_registry")


@pytest.fixture(autouse=True)
def isolated_imports(monkeypatch):
    """Each test starts with an empty reference cache and without the test files' modules imported."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in OWN_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    resolve.cache_clear()
    yield
    resolve.cache_clear()
    for name in OWN_MODULES:
        sys.modules.pop(name, None)


def fails(reference: str, message: str, **kwargs) -> None:
    with pytest.raises(UnresolvedReference, match=f"^{re.escape(message)}$"):
        resolve(reference, **kwargs)


# ---- what resolves ---------------------------------------------------------------------------------

def test_module_attr():
    assert resolve("sklearn.linear_model:LinearRegression") is LinearRegression


def test_nested_attr_of_a_module():
    assert resolve("collections:OrderedDict.fromkeys") == OrderedDict.fromkeys
    assert resolve("json:JSONDecoder.decode") is json.JSONDecoder.decode


@pytest.mark.parametrize(("name", "expected"), [
    pytest.param("lags", Lags, id="lags"),
    pytest.param("standard_scale", StandardScale, id="standard-scale"),
])
def test_short_name_from_the_default_package(name, expected):
    assert resolve(name, default_package=STEPS) is expected


def test_file_relative_to_base_dir_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    double = resolve("unit/unit_code.py:double", base_dir=str(DATA))
    assert double(21) == 42
    assert resolve("unit_code.py:Outer.Inner.value", base_dir=str(UNIT)) == 42


def test_file_is_loaded_once_whatever_the_path_to_it():
    first = resolve("unit_code.py:double", base_dir=str(UNIT))
    second = resolve("unit/../unit/unit_code.py:double", base_dir=str(DATA))
    assert first is second


def test_file_module_is_importable_by_its_stem_so_pickles_load():
    shift = resolve("unit_code.py:Shift", base_dir=str(UNIT))
    assert importlib.import_module("unit_code").Shift is shift
    payload = pickle.dumps(shift(by=2.5))
    del sys.modules["unit_code"]  # as in a fresh worker: the pickle imports the file by its stem
    restored = pickle.loads(payload)
    assert type(restored).__module__ == "unit_code"
    assert restored.by == 2.5


# ---- what does not -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("reference", "kwargs", "message"), [
    pytest.param("sklearn.linear_model:LinearRegresion", {},
                 "'sklearn.linear_model' has no attribute 'LinearRegresion'; did you mean 'LinearRegression'?",
                 id="attr"),
    pytest.param("sklearn.linear_model:Zzz", {}, "'sklearn.linear_model' has no attribute 'Zzz'", id="attr-no-hint"),
    pytest.param("unit_code.py:Outer.Iner.value", {"base_dir": str(UNIT)},
                 "'unit_code.py:Outer' has no attribute 'Iner'; did you mean 'Inner'?", id="nested-attr-in-file"),
    pytest.param("unit_code.py:doubel", {"base_dir": str(UNIT)},
                 "'unit_code.py' has no attribute 'doubel'; did you mean 'double'?", id="file-attr"),
    pytest.param("sklearn.linear_modle:LinearRegression", {},
                 "no module named 'sklearn.linear_modle'; did you mean 'sklearn.linear_model'?", id="module"),
    pytest.param("sklearnn.linear_model:LinearRegression", {}, "no module named 'sklearnn'", id="top-module"),
    pytest.param("Lags", {"default_package": STEPS}, "unknown built-in step 'Lags'; did you mean 'lags'?",
                 id="short-name-not-listed"),
    pytest.param("lagz", {"default_package": "raymlx.steps"}, "unknown built-in step 'lagz'; did you mean 'lags'?",
                 id="short-name-misspelt"),
    pytest.param("lags", {}, "'lags' is not a reference; write module:attr or file.py:attr", id="no-default-package"),
    pytest.param("sklearn.linear_model.LinearRegression", {"default_package": STEPS},
                 "'sklearn.linear_model.LinearRegression' is not a reference; write module:attr or file.py:attr",
                 id="dot-instead-of-colon"),
    pytest.param(":LinearRegression", {}, "':LinearRegression' is not a reference; write module:attr or file.py:attr",
                 id="no-module"),
    pytest.param("sklearn.linear_model:", {},
                 "'sklearn.linear_model:' is not a reference; write module:attr or file.py:attr", id="no-attr"),
])
def test_unresolved(reference, kwargs, message):
    fails(reference, message, **kwargs)


def test_short_name_with_nothing_close_lists_the_builtins():
    import raymlx.steps

    fails("zzzzzz", f"unknown built-in step 'zzzzzz' (built-ins: {', '.join(raymlx.steps.__all__)}); "
                    "name your own as module:attr or file.py:attr", default_package=STEPS)


def test_missing_file():
    fails("nowhere/absent.py:f", f"file 'nowhere/absent.py' not found (looked in {UNIT})", base_dir=str(UNIT))


def test_user_file_that_raises_on_import():
    fails("broken_on_import.py:anything",
          "cannot import 'broken_on_import.py': RuntimeError: this file fails on purpose", base_dir=str(UNIT))
    assert "broken_on_import" not in sys.modules  # a later fix of the file is picked up


def test_module_that_raises_on_import(tmp_path, monkeypatch):
    (tmp_path / "raising_module_for_registry.py").write_text("raise KeyError('setting')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fails("raising_module_for_registry:f", "cannot import module 'raising_module_for_registry': KeyError: 'setting'")


def test_module_whose_dependency_is_missing(tmp_path, monkeypatch):
    (tmp_path / "needs_dependency_for_registry.py").write_text("import not_installed_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fails("needs_dependency_for_registry:f", "no module named 'not_installed_dependency_xyz'")


def test_unresolved_reference_is_a_value_error():
    assert issubclass(UnresolvedReference, ValueError)


@pytest.mark.parametrize(("word", "choices", "expected"), [
    pytest.param("num_sample", ["num_samples", "seed"], "; did you mean 'num_samples'?", id="close"),
    pytest.param("zzz", ["num_samples", "seed"], "", id="nothing-close"),
    pytest.param(3, [1, 2, 3], "; did you mean '3'?", id="not-strings"),
])
def test_suggest(word, choices, expected):
    assert suggest(word, choices) == expected


# ---- the error names the object that lacks the attribute; user files never replace loaded modules --------

def test_nested_attr_error_names_the_object_that_lacks_it():
    fails("json:JSONDecoder.decod", "'json:JSONDecoder' has no attribute 'decod'; did you mean 'decode'?")


def test_user_file_named_like_an_imported_module_does_not_replace_it(tmp_path, monkeypatch):
    import colorsys

    monkeypatch.setitem(sys.modules, "colorsys", colorsys)  # put back after the test, whatever happens
    (tmp_path / "colorsys.py").write_text("def hls_to_rgb(*args):\n    return 'user code'\n")
    with pytest.raises(UnresolvedReference, match="file 'colorsys.py' has the same name as the module 'colorsys' "
                                                   r"already imported \(.*\); rename the file"):
        resolve("colorsys.py:hls_to_rgb", base_dir=str(tmp_path))
    assert sys.modules["colorsys"] is colorsys

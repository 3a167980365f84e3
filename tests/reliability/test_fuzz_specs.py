"""Seeded, bounded fuzzing of the examples' specs: every mutant is valid or a located spec error, never a crash.

Each mutation changes one thing a person might get wrong: a key dropped, misspelt or
duplicated in meaning, a value of the wrong type, an empty or huge value, a number out of
range. ``validate`` must answer each with success or a :class:`UserInputError` (exit 2);
any other exception would reach the user as a traceback or an exit 1.

A seeded sample of the mutants ``validate`` accepts is then tuned, shrunk to one model, one
trial per search and two folds on the shared Ray runtime: ``tune`` may refuse one with a
:class:`UserInputError` (exit 2), but fails with exit 1 only for a reason no check before the
first fit can know (:data:`UNFORESEEABLE`).
"""

from __future__ import annotations

import copy
import random
import shutil
from pathlib import Path

import pytest
import yaml

from raymlx.checks import validate
from raymlx.errors import UserInputError
from raymlx.experiment import run_experiment
from raymlx.spec_io import load_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [ROOT / "examples" / "tabular", ROOT / "examples" / "temperature"]
MUTANTS_PER_EXAMPLE = 150
TUNED = {"tabular": 2, "temperature": 1}  # mutants tuned per example (a forecast's tune costs more)

# What only a fit can show, so a spec validate accepts may still end with every trial failed (exit 1): a
# hyperparameter value the estimator refuses when it is fitted (scikit-learn's InvalidParameterError; validate
# checks parameter names and search bounds, not each estimator's own constraints on values). Each is a failed
# trial, named on the leaderboard with its reason.
UNFORESEEABLE = ("InvalidParameterError",)

ODD_VALUES = [None, "", "x" * 5000, -1, 0, 10**12, 1.5, float("nan"), float("inf"), True, [], {}, [1, "a"],
              {"type": "float"}, "module:attr", "../../etc/passwd", "nonexistent.py:f", "sklearn:Nothing"]


def _paths(node, prefix=()):
    """Every (path, value) in a nested mapping/list."""
    yield prefix, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _parent(doc, path):
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _mutate(doc: dict, rng: random.Random) -> dict:
    doc = copy.deepcopy(doc)
    path, _ = rng.choice([p for p in _paths(doc) if p[0]])
    parent, key = _parent(doc, path), path[-1]
    kind = rng.choice(["drop", "misspell", "odd", "swap"])
    if kind == "drop" and isinstance(parent, dict):
        del parent[key]
    elif kind == "misspell" and isinstance(parent, dict) and isinstance(key, str) and key:
        cut = rng.randrange(len(key))
        parent[key[:cut] + key[cut + 1:] + rng.choice("xs_")] = parent.pop(key)
    elif kind == "swap":
        other_path, other = rng.choice([p for p in _paths(doc) if p[0]])
        parent[key] = copy.deepcopy(other)
    else:
        parent[key] = rng.choice(ODD_VALUES)
    return doc


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_mutant_is_valid_or_a_spec_error(example, tmp_path, ray_runtime):
    project = tmp_path / example.name
    shutil.copytree(example, project, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".raymlx"))
    original = yaml.safe_load((example / "specs.yaml").read_text())
    rng = random.Random(20261127)
    outcomes = {"valid": 0, "spec error": 0}
    valid: list[dict] = []
    for _ in range(MUTANTS_PER_EXAMPLE):
        mutant = _mutate(original, rng)
        (project / "specs.yaml").write_text(yaml.safe_dump(mutant, sort_keys=False))
        try:
            validate(load_spec(project / "specs.yaml"), tracking=False)
            outcomes["valid"] += 1
            valid.append(mutant)
        except UserInputError as exc:
            assert str(exc).strip(), "an error with no message"
            assert len(str(exc)) < 20_000, "an error that echoes a huge value"
            outcomes["spec error"] += 1
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{type(exc).__name__}: {exc}\nfor the mutant:\n{yaml.safe_dump(mutant)[:3000]}")
    assert outcomes["spec error"] > MUTANTS_PER_EXAMPLE // 3  # the mutations do break things
    # Tuned: mutants of a model (where fits can fail), in the project validate used (its files imported once).
    of_a_model = [m for m in valid if m.get("models") != original["models"]]
    tuned = [_tune_exit(project, _tiny(mutant, original)) for mutant in rng.sample(of_a_model, TUNED[example.name])]
    assert [t for t in tuned if t[0] == 1 and not any(kind in t[1] for kind in UNFORESEEABLE)] == []


def _tiny(mutant: dict, original: dict) -> dict:
    """The mutant with one model (the one mutated), one trial per search (two values per choice of a grid), two
    folds, no report."""
    doc = copy.deepcopy(mutant)
    models = doc["models"]
    touched = [name for name, model in models.items() if original["models"].get(name) != model]
    keep = (touched or list(models))[0]
    doc["models"] = {keep: models[keep]}
    search = models[keep].get("search") if isinstance(models[keep], dict) else None
    if isinstance(search, dict) and search.get("algorithm") != "grid":
        search["num_samples"] = 1
    elif isinstance(search, dict) and isinstance(search.get("space"), dict):
        for dimension in search["space"].values():
            if isinstance(dimension, dict) and isinstance(dimension.get("values"), list):
                dimension["values"] = dimension["values"][:2]
    if isinstance(doc.get("validation"), dict):
        doc["validation"]["folds"] = 2
    doc["report"] = {"enabled": False}
    return doc


def _tune_exit(project: Path, doc: dict) -> tuple[int, str]:
    """The exit code ``raymlx tune`` would give the spec (0, 1 or 2), and why."""
    (project / "specs.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        loaded = load_spec(project / "specs.yaml")
        result = run_experiment(loaded, validate(loaded, tracking=False))
    except UserInputError as exc:
        return 2, str(exc)
    except Exception as exc:  # noqa: BLE001 - what the command line reports with exit 1
        return 1, f"{type(exc).__name__}: {exc}"
    if result.champion_uri is None:
        return 1, "; ".join(f"{row.model}: {row.last_error}" for row in result.leaderboard)
    return 0, f"champion {result.champion}"

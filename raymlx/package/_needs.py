"""What a spec's code needs installed besides raymlx: which raymlx extras, which other distributions.

Every code reference of the spec (models, pipeline steps, metric) is followed to its
source without running the user's code: raymlx's own adapters declare the extra they
need (``extra``, see :mod:`raymlx.models.base`); a user's file is read
for its imports; a third-party module stands for itself. Import names map to distributions through the
installed packages' metadata, and distributions to raymlx's extras through raymlx's.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Iterator, Mapping

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from raymlx.models.base import MODEL_PACKAGE, extra_of
from raymlx.errors import UserInputError
from raymlx.pipeline import STEP_PACKAGE
from raymlx.registry import UnresolvedReference, resolve
from raymlx.spec_io import LoadedSpec

__all__ = ["Needs", "find_needs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Needs:
    """What to install for a spec.

    Attributes:
        extras: raymlx extras, e.g. ``("forecasting",)``.
        packages: Other distributions, pinned to the installed version (``xgboost==2.1.3``).
        unknown: Imported modules no installed distribution provides.
    """

    extras: tuple[str, ...]
    packages: tuple[str, ...]
    unknown: tuple[str, ...]


def _references(loaded: LoadedSpec) -> Iterator[tuple[str, str, str | None]]:
    """Every code reference as (where, reference, default package)."""
    spec = loaded.spec
    for name, model in spec.models.items():
        yield f"models.{name}.model", model.model, MODEL_PACKAGE
    for name, steps in spec.pipelines.items():
        for i, step in enumerate(steps):
            if step.step not in spec.pipelines:
                yield f"pipelines.{name}.{i}.step", step.step, STEP_PACKAGE
    if ":" in spec.metric_spec.name:
        yield "metric.name", spec.metric_spec.name, None


def _source(where: str, reference: str, package: str | None, project: Path) -> tuple[str, Path | None]:
    """(module name, source file) of a reference; a user's file is read, never imported."""
    module, _, _ = reference.partition(":")
    if module.endswith(".py"):
        file = (project / module).resolve()
        if not file.is_file():
            raise UserInputError(f"{where}: file '{module}' not found (looked in {project})")
        return file.stem, file
    if ":" not in reference:  # a built-in: its module is raymlx's own and cheap to import
        try:
            module = getattr(resolve(reference, default_package=package), "__module__", module)
        except UnresolvedReference as exc:
            raise UserInputError(f"{where}: {exc}") from None
    if module.partition(".")[0] != "raymlx":
        return module, None
    found = importlib.util.find_spec(module)
    return module, Path(found.origin) if found and found.origin else None


def _imports(tree: ast.AST) -> set[str]:
    """Top-level names of the absolute imports of a file."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


@lru_cache(maxsize=1)
def _raymlx_requirements() -> tuple[set[str], dict[str, str]]:
    """raymlx's core distributions, and each optional distribution's extra (the first that lists it)."""
    dist = metadata.distribution("raymlx")
    core: set[str] = set()
    optional: dict[str, str] = {}
    extras = dist.metadata.get_all("Provides-Extra") or []
    for line in dist.requires or []:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name == "raymlx":
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            core.add(name)
            continue
        extra = next((e for e in extras if requirement.marker.evaluate({"extra": e})), None)
        if extra is not None:
            optional.setdefault(name, extra)
    return core, optional


@lru_cache(maxsize=1)
def _providers() -> Mapping[str, list[str]]:
    """Distributions by the top-level module names they install (reads every installed distribution)."""
    return metadata.packages_distributions()


def _classify(module: str, project: Path, found: dict[str, set[str]]) -> None:
    """File a top-level module name under extras, packages or unknown; skip the stdlib and the project's own."""
    if module in sys.stdlib_module_names or module == "raymlx" or (project / f"{module}.py").exists() \
            or (project / module).is_dir():
        return
    core, optional = _raymlx_requirements()
    distributions = _providers().get(module)
    if not distributions:
        found["unknown"].add(module)
        return
    for name in map(canonicalize_name, distributions):
        if name in optional:
            found["extras"].add(optional[name])
        elif name not in core:
            found["packages"].add(f"{name}=={metadata.version(name)}")


def find_needs(loaded: LoadedSpec) -> Needs:
    """What the spec's models, steps and metric need installed besides raymlx's core.

    Args:
        loaded: The spec.

    Returns:
        The raymlx extras, the other distributions (pinned), and imports nothing provides.

    Raises:
        UserInputError: When a reference does not resolve.
    """
    project = Path(loaded.base_dir).resolve()
    found: dict[str, set[str]] = {"extras": set(), "packages": set(), "unknown": set()}
    for where, reference, package in _references(loaded):
        name, source = _source(f"{loaded.path}: {where}", reference, package, project)
        top = name.partition(".")[0]
        if source is None or not source.suffix == ".py":
            _classify(top, project, found)
            continue
        if top == "raymlx":  # raymlx's own adapters declare the extra they need
            extra = extra_of(resolve(reference, base_dir=str(project), default_package=package))
            found["extras"] |= {extra} if extra else set()
            continue
        tree = ast.parse(source.read_text(), filename=str(source))
        if source.resolve().is_relative_to(project):
            for imported in _imports(tree):
                _classify(imported, project, found)
        else:
            _classify(top, project, found)
    if found["unknown"]:
        logger.warning("no installed distribution provides %s; add what does to requirements.txt",
                       ", ".join(sorted(found["unknown"])))
    return Needs(*(tuple(sorted(found[k])) for k in ("extras", "packages", "unknown")))

"""Resolving code references written in a spec: built-in names, ``module:attr`` and ``file.py:attr``.

Specs import code, so a spec is trusted input, like a Python script.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["UnresolvedReference", "resolve", "suggest"]


class UnresolvedReference(ValueError):
    """A reference that does not import; the message says why."""


def suggest(word: str, choices) -> str:
    """Return "; did you mean 'x'?" for the closest choice, or an empty string."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _load_file_module(file: Path) -> Any:
    """Import a user's file under its own stem, so pickles of its objects load wherever the file is on sys.path."""
    folder, stem = str(file.parent), file.stem
    cached = sys.modules.get(stem)
    if cached is not None and Path(getattr(cached, "__file__", "") or "").resolve() == file:
        return cached
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(stem, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[stem]
        raise
    return module


def _attr(module: Any, attr: str, where: str) -> Any:
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise UnresolvedReference(f"'{where}' has no attribute '{part}'{suggest(part, names)}")
        obj = getattr(obj, part)
    return obj


@lru_cache(maxsize=256)
def resolve(reference: str, *, base_dir: str = ".", default_package: str | None = None) -> Any:
    """Import the object a reference names.

    Args:
        reference: ``name`` (looked up in ``default_package``), ``package.module:attr``
            or ``path/to/file.py:attr`` (relative to ``base_dir``).
        base_dir: Folder that relative file paths start from (the spec's folder).
        default_package: Module holding the built-in short names.

    Returns:
        The object.

    Raises:
        UnresolvedReference: When the module or attribute cannot be imported; the
            message names the reference and suggests close names.
    """
    module_part, sep, attr = reference.partition(":")
    if not sep:
        if default_package is None or "." in reference:
            raise UnresolvedReference(f"'{reference}' is not a reference; write module:attr or file.py:attr")
        return _attr(importlib.import_module(default_package), reference, default_package)
    if not module_part or not attr:
        raise UnresolvedReference(f"'{reference}' is not a reference; write module:attr or file.py:attr")
    if module_part.endswith(".py"):
        file = (Path(base_dir) / module_part).resolve()
        if not file.is_file():
            raise UnresolvedReference(f"file '{module_part}' not found (looked in {Path(base_dir).resolve()})")
        try:
            module = _load_file_module(file)
        except Exception as exc:  # the user's file failed while importing
            raise UnresolvedReference(f"cannot import '{module_part}': {type(exc).__name__}: {exc}") from exc
        return _attr(module, attr, module_part)
    try:
        module = importlib.import_module(module_part)
    except ModuleNotFoundError as exc:
        parent = module_part.rpartition(".")[0]
        hint = ""
        if parent and exc.name == module_part:
            try:
                siblings = [m.name for m in pkgutil.iter_modules(importlib.import_module(parent).__path__)]
                hint = suggest(module_part.rpartition(".")[2], siblings)
            except Exception:  # the parent itself is missing: the plain message says so
                hint = ""
        raise UnresolvedReference(f"cannot import module '{module_part}' ({exc}){hint}") from exc
    except Exception as exc:
        raise UnresolvedReference(f"cannot import module '{module_part}': {type(exc).__name__}: {exc}") from exc
    return _attr(module, attr, module_part)

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

__all__ = ["UnresolvedReference", "closest", "resolve", "suggest"]


class UnresolvedReference(ValueError):
    """A reference that does not import; the message says why."""


def closest(word: str, choices) -> str | None:
    """The choice closest to a misspelt word, if any is close."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return match[0] if match else None


def suggest(word: str, choices) -> str:
    """Return "; did you mean 'x'?" for the closest choice, or an empty string."""
    match = closest(word, choices)
    return f"; did you mean '{match}'?" if match else ""


def _load_file_module(file: Path) -> Any:
    """Import a user's file under its own stem, so pickles of its objects load wherever the file is on sys.path."""
    folder, stem = str(file.parent), file.stem
    cached = sys.modules.get(stem)
    if cached is not None:
        if Path(getattr(cached, "__file__", "") or "").resolve() == file:
            return cached
        raise UnresolvedReference(f"file '{file.name}' has the same name as the module '{stem}' "
                                  f"already imported ({getattr(cached, '__file__', 'built in')}); rename the file")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(stem, file)
    if spec is None or spec.loader is None:
        raise UnresolvedReference(f"cannot import '{file.name}': not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[stem]
        raise
    return module


def _attr(module: Any, attr: str, where: str) -> Any:
    obj, walked = module, list[str]()
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            owner = f"{where}:{'.'.join(walked)}" if walked else where
            raise UnresolvedReference(f"'{owner}' has no attribute '{part}'{suggest(part, names)}")
        obj = getattr(obj, part)
        walked.append(part)
    return obj


def _builtin(name: str, package: str) -> Any:
    """A built-in short name: only what the package lists in ``__all__`` counts."""
    module = importlib.import_module(package)
    names = list(getattr(module, "__all__", []))
    if name not in names:
        kind = package.rpartition(".")[2].rstrip("s")
        hint = suggest(name, names) or (f" (built-ins: {', '.join(names)}); "
                                        "name your own as module:attr or file.py:attr")
        raise UnresolvedReference(f"unknown built-in {kind} '{name}'{hint}")
    return getattr(module, name)


def _sibling_hint(module_part: str, missing: str | None) -> str:
    """Suggest the full dotted name of a close sibling of a mistyped module."""
    parent, _, leaf = module_part.rpartition(".")
    if not parent or missing != module_part:
        return ""
    try:
        siblings = [m.name for m in pkgutil.iter_modules(importlib.import_module(parent).__path__)]
    except Exception:  # the parent is not a package we can list: no hint
        return ""
    match = closest(leaf, siblings)
    return f"; did you mean '{parent}.{match}'?" if match else ""


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
        return _builtin(reference, default_package)
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
        raise UnresolvedReference(f"no module named '{exc.name}'{_sibling_hint(module_part, exc.name)}") from exc
    except Exception as exc:
        raise UnresolvedReference(f"cannot import module '{module_part}': {type(exc).__name__}: {exc}") from exc
    return _attr(module, attr, module_part)

"""Writing a template's files into a project folder, never over a file that exists unless forced.

Templates are package data under ``templates/``: ``common/`` goes into every project,
``<template>/`` on top of it. A file named ``dot-x`` is written as ``.x`` (package data
keeps no hidden files); a ``.tmpl`` file is filled in with :class:`string.Template`
and loses the suffix. The spec's JSON Schema is written from the installed raymlx, so
editors complete exactly the fields this version accepts.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Iterator

from raymlx._files import write_files
from raymlx.errors import UserInputError
from raymlx.spec import Spec

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["TEMPLATES", "plan", "project_name", "scaffold"]

TEMPLATES = ("tabular", "forecasting")
SCHEMA_FILE = "raymlx.schema.json"
_ROOT = files("raymlx.scaffold") / "templates"
# Values a template's ``.tmpl`` files may use besides ``$name``.
_TEMPLATE_VALUES = {
    "tabular": {"train_function": "polynomial_ridge", "feature_step": "ratio",
                "data_hint": " (the column to predict) and `task` (regression or classification)"},
    "forecasting": {"train_function": "recency_weighted_ridge", "feature_step": "fourier_terms",
                    "data_hint": ", `data.time_column` and `validation.horizon` (rows to forecast)"},
}


def _walk(folder: Traversable, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Traversable]]:
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            if entry.name != "__pycache__":
                yield from _walk(entry, (*prefix, entry.name))
        else:
            yield (*prefix, entry.name), entry


def _target(parts: tuple[str, ...]) -> Path:
    name = parts[-1]
    if name.startswith("dot-"):
        name = "." + name[len("dot-"):]
    return Path(*parts[:-1], name.removesuffix(".tmpl"))


def project_name(directory: Path) -> str:
    """A name for the experiment and registered model: the folder's name, lower case, ``-`` between words."""
    name = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")
    return name or "raymlx-project"


def plan(directory: str | Path, *, template: str = "tabular") -> dict[Path, bytes]:
    """The files a template writes, by path relative to ``directory``, with their contents.

    Args:
        directory: The project folder (it need not exist).
        template: One of :data:`TEMPLATES`.

    Returns:
        Contents by relative path.

    Raises:
        UserInputError: When the template is unknown.
    """
    if template not in TEMPLATES:
        raise UserInputError(f"unknown template '{template}' (templates: {', '.join(TEMPLATES)})")
    values = {"name": project_name(Path(directory)), "template": template, **_TEMPLATE_VALUES[template]}
    contents: dict[Path, bytes] = {}
    for source in ("common", template):
        for parts, entry in _walk(_ROOT / source):
            data = entry.read_bytes()
            if parts[-1].endswith(".tmpl"):
                data = Template(data.decode("utf-8")).substitute(values).encode("utf-8")
            contents[_target(parts)] = data
    contents[Path(SCHEMA_FILE)] = (json.dumps(Spec.model_json_schema(), indent=2) + "\n").encode("utf-8")
    return contents


def scaffold(directory: str | Path, *, template: str = "tabular", force: bool = False) -> list[Path]:
    """Write a new project from a template.

    Args:
        directory: The project folder; created when missing.
        template: One of :data:`TEMPLATES`.
        force: Overwrite files of the template that exist already.

    Returns:
        The files written, by path relative to ``directory``.

    Raises:
        FilesExist: When some of the files exist and ``force`` is false; nothing is written
            and the message names every such file.
        UserInputError: When the template is unknown or ``directory`` is a file.
    """
    return write_files(Path(directory), plan(directory, template=template), force=force)

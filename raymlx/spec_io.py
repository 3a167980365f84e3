"""Reading a spec file: YAML with positions, ``--set`` overrides, and pydantic errors a person can act on."""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from raymlx._yaml import Positions, load_yaml
from raymlx.errors import Problem, SpecError, UserInputError
from raymlx.registry import suggest
from raymlx.spec import Spec

__all__ = ["LoadedSpec", "load_spec", "apply_overrides"]


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with what is needed to point at its lines."""

    spec: Spec
    path: Path
    positions: Positions = field(default_factory=dict)
    overrides: dict[tuple, str] = field(default_factory=dict)

    @property
    def base_dir(self) -> str:
        """Folder that relative paths in the spec start from."""
        return str(self.path.parent)

    def problem(self, path: tuple, message: str) -> Problem:
        """A problem at a field path, located in the file or on the command line."""
        return _locate(path, message, str(self.path), self.positions, self.overrides)


def _locate(path: tuple, message: str, source: str, positions: Positions, overrides: dict) -> Problem:
    dotted = ".".join(str(p) for p in path)
    for cut in range(len(path), -1, -1):
        if path[:cut] in overrides:
            return Problem(dotted, message, f"--set {overrides[path[:cut]]}")
        if path[:cut] in positions:
            line, column = positions[path[:cut]]
            return Problem(dotted, message, source, line, column)
    return Problem(dotted, message, source)


def apply_overrides(data: dict, overrides: list[str]) -> dict[tuple, str]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) in place.

    Returns:
        The overridden paths, mapped to the override text.

    Raises:
        UserInputError: For an override without ``=`` or with an unparsable value.
    """
    applied = {}
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise UserInputError(f"--set {text}: expected key.path=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise UserInputError(f"--set {text}: value is not valid YAML: {exc}") from None
        path = tuple(key.split("."))
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
        applied[path] = text
    return applied


def load_spec(path: str | Path, *, overrides: list[str] | None = None) -> LoadedSpec:
    """Read and validate a spec file.

    Args:
        path: The ``specs.yaml`` file.
        overrides: ``key.path=value`` strings applied before validation.

    Returns:
        The validated spec with its positions.

    Raises:
        SpecError: Every schema problem at once, each with file:line:col.
        UserInputError: When the file cannot be read.
    """
    path = Path(path).resolve()
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserInputError(f"cannot read spec {path}: {exc.strerror}") from None
    data, positions = load_yaml(text, source=str(path))
    if not isinstance(data, dict):
        raise SpecError([Problem("", "a spec must be a mapping of sections (name, task, data, models, ...)", str(path), 1, 1)])
    applied = apply_overrides(data, overrides or [])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError([_to_problem(e, data, str(path), positions, applied) for e in exc.errors()]) from None
    return LoadedSpec(spec, path, positions, applied)


def _data_path(loc: tuple, data: Any) -> tuple:
    """Drop union tags from a pydantic location, keeping the keys written in the spec."""
    kept, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and node.get("type") == part:
            continue
        else:
            node = None
        kept.append(part)
    return tuple(kept)


def _to_problem(error: dict, data: dict, source: str, positions: Positions, overrides: dict) -> Problem:
    path = _data_path(error["loc"], data)
    return _locate(path, _message(error, error["loc"]), source, positions, overrides)


def _message(error: dict, loc: tuple) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        names = list(model.model_fields) if model else []
        return f"unknown field '{loc[-1]}'{suggest(loc[-1], names)}"
    if kind == "literal_error":
        expected = error["ctx"]["expected"]
        return f"must be one of {expected}, but got {value!r}{suggest(value, expected.replace(chr(39), '').replace(' or ', ', ').split(', '))}"
    if kind == "union_tag_invalid":
        expected = error["ctx"]["expected_tags"]
        tag = error["ctx"]["tag"]
        return f"type must be one of {expected}, but got '{tag}'{suggest(tag, expected.replace(chr(39), '').split(', '))}"
    if kind == "union_tag_not_found":
        return "a search parameter needs a 'type': float, int or choice"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{error['msg'][0].lower()}{error['msg'][1:]}, but got {value!r}"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The spec class at a pydantic location, for listing its field names."""
    node: Any = Spec
    for part in loc:
        node = _step_into(node, part)
        if node is None:
            return None
    for candidate in (node, *get_args(node)):
        if inspect.isclass(candidate) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _step_into(tp: Any, part: Any) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if inspect.isclass(tp) and issubclass(tp, BaseModel):
        found = tp.model_fields.get(part)
        return found.annotation if found else None
    if origin is Annotated:
        return _step_into(args[0], part)
    if origin in (Union, types.UnionType):
        for arg in args:
            tag = getattr(arg, "model_fields", {}).get("type")
            if tag is not None and get_origin(tag.annotation) is Literal and part in get_args(tag.annotation):
                return arg
        members = [a for a in args if a is not type(None)]
        return _step_into(members[0], part) if len(members) == 1 else None
    if origin is dict:
        return args[1]
    if origin is list:
        return args[0]
    return None

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
from raymlx.errors import Problem, SpecError, UserInputError, shorten
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

    A number in the path indexes a list (``pipelines.prep.0.params``).

    Returns:
        The overridden paths, mapped to the override text.

    Raises:
        UserInputError: For an override without ``=``, with an unparsable value or a bad list index.
    """
    applied = {}
    for text in overrides:
        key, sep, raw = text.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise UserInputError(f"--set {text}: expected key.path=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise UserInputError(f"--set {text}: value is not valid YAML: {exc}") from None
        applied[_set(data, parts, value, text)] = text
    return applied


def _set(data: dict, parts: list[str], value: Any, text: str) -> tuple:
    """Put ``value`` at ``parts`` inside ``data``, making mappings on the way; return the path written."""
    node: Any = data
    path: list[Any] = []
    for depth, part in enumerate(parts):
        key: Any = part
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                where = ".".join(parts[:depth])
                raise UserInputError(f"--set {text}: '{where}' is a list of {len(node)} items, "
                                     f"so '{part}' must be an index from 0 to {len(node) - 1}")
            key = int(part)
        path.append(key)
        if depth == len(parts) - 1:
            node[key] = value
        else:
            child = node[key] if isinstance(node, list) else node.get(key)
            if not isinstance(child, (dict, list)):
                child = node[key] = {}
            node = child
    return tuple(path)


def load_spec(path: str | Path, *, overrides: list[str] | None = None) -> LoadedSpec:
    """Read and validate a spec file.

    Args:
        path: The ``specs.yaml`` file.
        overrides: ``key.path=value`` strings applied before validation.

    Returns:
        The validated spec with its positions.

    Raises:
        SpecError: Every schema problem at once, each with file:line:col, in file order.
        UserInputError: When the file cannot be read.
    """
    path = Path(path).resolve()
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserInputError(f"cannot read spec {path}: {exc.strerror}") from None
    data, positions = load_yaml(text, source=str(path))
    if not isinstance(data, dict):
        raise SpecError([Problem("", _not_a_mapping(data), str(path), 1, 1)])
    applied = apply_overrides(data, overrides or [])
    # What the command line replaced is no longer where the file says.
    positions = {p: at for p, at in positions.items() if not any(p[:len(o)] == o for o in applied)}
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        problems = [_to_problem(dict(e), data, str(path), positions, applied) for e in exc.errors()]
        raise SpecError(problems) from None
    return LoadedSpec(spec, path, positions, applied)


def _not_a_mapping(data: Any) -> str:
    if data is None:
        return "the spec is empty; it needs at least name, task, data and models"
    kind = "list" if isinstance(data, list) else "single value"
    return f"a spec must be a mapping of sections (name, task, data, models, ...), but got a {kind}"


def _data_path(loc: tuple, data: Any) -> tuple:
    """Drop union tags from a pydantic location, keeping the keys written in the spec."""
    kept, node, untagged = [], data, None
    for part in loc:
        # The tag comes right after the parameter, and before any key of it, even one named like the tag.
        if isinstance(node, dict) and node.get("type") == part and node is not untagged:
            untagged = node
            continue
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
        kept.append(part)
    return tuple(kept)


def _to_problem(error: dict, data: dict, source: str, positions: Positions, overrides: dict) -> Problem:
    path = _data_path(error["loc"], data)
    if error["type"] == "union_tag_invalid":
        path = (*path, "type")  # point at the `type:` the person wrote
    return _locate(path, _message(error, error["loc"]), source, positions, overrides)


# pydantic error type -> what the value must be
_KINDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
}
_BOUNDS = {"greater_than": ("gt", "greater than"), "greater_than_equal": ("ge", "at least"),
           "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


def _show(value: Any) -> str:
    """A value as the person wrote it in YAML, near enough."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return shorten(repr(value), 80)


def _one_of(words: list[str]) -> str:
    quoted = [f"'{w}'" for w in words]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _message(error: dict, loc: tuple) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        names = list(model.model_fields) if model else []
        return f"unknown field '{loc[-1]}'{suggest(str(loc[-1]), names)}"
    if kind == "literal_error":
        expected = [w.strip("'") for w in ctx["expected"].replace(" or ", ", ").split(", ")]
        return f"must be one of {_one_of(expected)}, but got {_show(value)}{suggest(str(value), expected)}"
    if kind == "union_tag_invalid":
        expected = [w.strip("'") for w in ctx["expected_tags"].split(", ")]
        tag = ctx["tag"]
        return f"must be one of {_one_of(expected)}, but got '{tag}'{suggest(tag, expected)}"
    if kind == "union_tag_not_found":
        return "a search parameter needs a 'type': float, int or choice"
    if kind == "model_attributes_type" and get_origin(_type_at(loc)) is Annotated:
        return f"a search parameter must be a mapping with a 'type': float, int or choice, but got {_show(value)}"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{_rule(kind, ctx) or error['msg'][0].lower() + error['msg'][1:]}, but got {_show(value)}"


def _rule(kind: str, ctx: dict) -> str | None:
    """What a value must be, for pydantic's type, bound and length errors; ``None`` for others."""
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}"
    if kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        return f"must be {words} {ctx[bound]}"
    if kind in ("too_short", "string_too_short"):
        least = ctx["min_length"]
        unit = "character" if kind == "string_too_short" else "item"
        return "must not be empty" if least == 1 else f"must have at least {least} {unit}s"
    return None


def _type_at(loc: tuple) -> Any:
    """The annotation at a pydantic location, or ``None`` when the location leaves the spec's types."""
    node: Any = Spec
    for part in loc:
        node = _step_into(node, part)
        if node is None:
            return None
    return node


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The spec class at a pydantic location, for listing its field names."""
    node = _type_at(loc)
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

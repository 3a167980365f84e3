"""YAML loading that remembers where every value was written and rejects duplicate keys."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from raymlx.errors import Problem, SpecError

Path = tuple[Any, ...]
Positions = dict[Path, tuple[int, int]]

_MERGE = "tag:yaml.org,2002:merge"


class _PositionLoader(yaml.SafeLoader):
    """SafeLoader that records 1-based (line, column) of each node by its path."""


def _at(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1  # PyYAML counts from 0


def _fail(path: Path, message: str, source: str, mark: yaml.Mark) -> SpecError:
    return SpecError([Problem(".".join(map(str, path)), message, source, *_at(mark))])


def _pairs(node: yaml.MappingNode, path: Path, source: str) -> list[tuple[yaml.Node, yaml.Node, bool]]:
    """A mapping's (key, value, written here) pairs, ``<<`` merges first so that keys written here win.

    Of several merged mappings (``<<: [*a, *b]``) the first wins, as YAML 1.1 says.
    """
    merged, own = [], []
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            own.append((key_node, value_node, True))
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source_node in reversed(sources):
            if not isinstance(source_node, yaml.MappingNode):
                raise _fail(path, "'<<' merges a mapping or a list of mappings", source, source_node.start_mark)
            merged += [(k, v, False) for k, v, _ in _pairs(source_node, path, source)]
    return merged + own


def _compose_with_paths(loader: _PositionLoader, node: yaml.Node, path: Path, positions: Positions, source: str):
    positions[path] = _at(node.start_mark)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        written: dict[Any, Any] = {}
        for key_node, value_node, own in _pairs(node, path, source):
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise _fail(path, f"a key must be a single value, but got {key!r}", source, key_node.start_mark)
            if own and key in written:
                raise _fail((*path, key), f"duplicate key '{key}' (first defined at line {written[key]})",
                            source, key_node.start_mark)
            result[key] = _compose_with_paths(loader, value_node, (*path, key), positions, source)
            positions[(*path, key)] = _at(key_node.start_mark)
            if own:
                written[key] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_compose_with_paths(loader, child, (*path, i), positions, source)
                for i, child in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem, plus where the construct it was reading began (e.g. an unclosed ``[``)."""
    problem = exc.problem or str(exc)
    if not exc.context:
        return f"invalid YAML: {problem}"
    if not exc.context.startswith("while "):  # e.g. "expected a single document in the stream"
        return f"invalid YAML: {exc.context}, {problem}"
    if exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
        line, column = _at(exc.context_mark)
        return f"invalid YAML: {problem} ({exc.context} started at line {line}, column {column})"
    return f"invalid YAML: {problem}"


def load_yaml(text: str, *, source: str) -> tuple[Any, Positions]:
    """Parse YAML text into plain data plus a map from key path to position.

    Args:
        text: The YAML document.
        source: Name used in error messages (usually the file path).

    Returns:
        The parsed data and ``{path tuple: (line, column)}``, both 1-based.

    Raises:
        SpecError: On a syntax error, a duplicate key or a key that is not a single value.
    """
    loader = _PositionLoader(text)
    positions: Positions = {}
    try:
        node = loader.get_single_node()
        if node is None:
            return None, positions
        return _compose_with_paths(loader, node, (), positions, source), positions
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _at(mark) if mark else (None, None)
        raise SpecError([Problem("", _syntax_message(exc), source, line, col)]) from None
    finally:
        loader.dispose()

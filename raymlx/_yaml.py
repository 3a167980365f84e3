"""YAML loading that remembers where every value was written and rejects duplicate keys."""

from __future__ import annotations

from typing import Any

import yaml

from raymlx.errors import Problem, SpecError

Path = tuple[Any, ...]
Positions = dict[Path, tuple[int, int]]


class _PositionLoader(yaml.SafeLoader):
    """SafeLoader that records 1-based (line, column) of each node by its path."""


def _compose_with_paths(loader: _PositionLoader, node: yaml.Node, path: Path, positions: Positions, source: str):
    positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in result:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                first = positions[(*path, key)]
                raise SpecError([Problem(".".join(map(str, (*path, key))),
                                         f"duplicate key '{key}' (first defined at line {first[0]})",
                                         source, line, col)])
            result[key] = _compose_with_paths(loader, value_node, (*path, key), positions, source)
            positions[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_compose_with_paths(loader, child, (*path, i), positions, source)
                for i, child in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(text: str, *, source: str) -> tuple[Any, Positions]:
    """Parse YAML text into plain data plus a map from key path to position.

    Args:
        text: The YAML document.
        source: Name used in error messages (usually the file path).

    Returns:
        The parsed data and ``{path tuple: (line, column)}``, both 1-based.

    Raises:
        SpecError: On a syntax error or a duplicate key.
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
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise SpecError([Problem("", f"invalid YAML: {exc.problem or exc}", source, line, col)]) from None
    finally:
        loader.dispose()

"""Exceptions raised by raymlx, and how a person reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Problem", "RaymlxError", "UserInputError", "SpecError", "DataError", "redact", "shorten"]

# scheme://user:password@host: the password part of a URI's user information
_PASSWORD_IN_URI = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):(?P<password>[^@/\s]+)@")


def redact(text: str) -> str:
    """``text`` with the password of every URI in it (``http://alice:s3cret@host``) shown as ``***``."""
    return _PASSWORD_IN_URI.sub(r"\g<head>:***@", text)


def shorten(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out (values echoed in messages)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located as precisely as we know.

    Attributes:
        path: Dotted field path inside the spec, e.g. ``models.rf.search``.
        message: What is wrong, with the values involved.
        source: File (or ``--set``) the value came from.
        line: 1-based line, or ``None`` when unknown.
        column: 1-based column, or ``None`` when unknown.
    """

    path: str
    message: str
    source: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = self.source
            if self.line is not None:
                where += f":{self.line}:{self.column}"
            where += ": "
        field = f"{self.path}: " if self.path else ""
        return redact(f"{where}{field}{self.message}")


def _reading_order(problem: Problem) -> tuple[bool, int, int]:
    """Top to bottom through the file; problems with no line (``--set``) last."""
    return (problem.line is None, problem.line or 0, problem.column or 0)


class RaymlxError(Exception):
    """Base class of every error raymlx raises on purpose."""

    exit_code = 1


class UserInputError(RaymlxError):
    """The user's input (spec, data, arguments) is wrong; exit code 2."""

    exit_code = 2


class SpecError(UserInputError):
    """One or more problems with a spec, reported together."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=_reading_order)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[Problem]]]:  # keeps the problems across Ray processes
        return (type(self), (self.problems,))


class DataError(UserInputError):
    """The data set cannot be read or does not have what the spec names."""

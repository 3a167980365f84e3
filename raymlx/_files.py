"""Writing generated files into a user's folder without overwriting what is there, unless forced."""

from __future__ import annotations

import logging
from pathlib import Path

from raymlx.errors import UserInputError

__all__ = ["FilesExist", "refuse_existing", "write_files"]

logger = logging.getLogger(__name__)


class FilesExist(UserInputError):
    """Some of the files to write exist already and overwriting was not asked for."""


def refuse_existing(root: Path, paths) -> list[str]:
    """Raise :class:`FilesExist` naming those of ``paths`` (relative to ``root``) that exist."""
    existing = sorted(str(path) for path in paths if (root / path).exists())
    if existing:
        raise FilesExist(f"{root}: {len(existing)} of the files to write exist already: {', '.join(existing)}; "
                         "nothing was written (--force overwrites them)")
    return existing


def write_files(root: Path, contents: dict[Path, bytes], *, force: bool = False) -> list[Path]:
    """Write files under ``root``, all or none.

    Args:
        root: The folder; created when missing.
        contents: Contents by path relative to ``root``.
        force: Overwrite files that exist.

    Returns:
        The paths written, relative to ``root``, sorted.

    Raises:
        FilesExist: When some files exist and ``force`` is false; nothing is written and the
            message names every such file.
        UserInputError: When ``root`` is a file.
    """
    if root.exists() and not root.is_dir():
        raise UserInputError(f"{root}: not a folder")
    existing = sorted(str(path) for path in contents if (root / path).exists())
    if not force:
        refuse_existing(root, contents)
    for path, data in contents.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    if existing:
        logger.warning("overwrote %s in %s", ", ".join(existing), root)
    return sorted(contents)

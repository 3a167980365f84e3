"""Optional dependencies (prophet, darts, …): imported when first needed, with an install hint when missing.

Two forms, after Optuna's ``optuna/_imports.py``:

* :func:`import_optional` imports a module inside the method that needs it, so that
  importing raymlx (and building a model, which must stay cheap) never pays for it;
* :func:`try_import` defers an ``ImportError`` raised in a ``with`` block at module
  level until :meth:`~DeferredImport.check` is called.
"""

from __future__ import annotations

import importlib
from types import ModuleType, TracebackType

__all__ = ["DeferredImport", "import_optional", "install_hint", "try_import"]


def install_hint(module: str, *, package: str | None = None, extra: str | None = None,
                 needed_for: str | None = None) -> str:
    """The message shown when an optional module is missing.

    Args:
        module: Module that failed to import (``prophet``).
        package: Name to ``pip install`` when it differs from the module's.
        extra: The raymlx extra that installs it (``forecasting``).
        needed_for: What needs it, e.g. ``"the Prophet model"``.
    """
    what = f"{needed_for} needs" if needed_for else "raymlx needs"
    package = package or module.partition(".")[0]
    command = f"pip install 'raymlx[{extra}]' (or pip install {package})" if extra else f"pip install {package}"
    return f"{what} the optional package '{package}', which is not installed; install it with: {command}"


def import_optional(module: str, *, package: str | None = None, extra: str | None = None,
                    needed_for: str | None = None) -> ModuleType:
    """Import an optional module, or say how to install it.

    Args:
        module: Module to import.
        package: Name to ``pip install`` when it differs from the module's.
        extra: The raymlx extra that installs it.
        needed_for: What needs it, for the message.

    Raises:
        ImportError: When the module is missing; the message carries the install hint.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        if exc.name is not None and exc.name.partition(".")[0] != top:
            raise  # the module is there but one of its own dependencies is broken: show that error
        hint = install_hint(module, package=package, extra=extra, needed_for=needed_for)
        raise ImportError(hint, name=exc.name) from exc


class DeferredImport:
    """Context manager that keeps an ``ImportError`` until :meth:`check` is called."""

    def __init__(self, package: str | None = None, extra: str | None = None, needed_for: str | None = None) -> None:
        self._package = package
        self._extra = extra
        self._needed_for = needed_for
        self._deferred: tuple[ImportError, str] | None = None

    def __enter__(self) -> DeferredImport:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> bool | None:
        if isinstance(exc_value, ImportError):
            module = exc_value.name or self._package or "a module"
            message = install_hint(module, package=self._package, extra=self._extra, needed_for=self._needed_for)
            self._deferred = (exc_value, message)
            return True
        return None

    def is_successful(self) -> bool:
        """True when every import in the block succeeded."""
        return self._deferred is None

    def check(self) -> None:
        """Raise the deferred ``ImportError`` with its install hint, if there is one."""
        if self._deferred is not None:
            exc_value, message = self._deferred
            raise ImportError(message) from exc_value


def try_import(package: str | None = None, *, extra: str | None = None,
               needed_for: str | None = None) -> DeferredImport:
    """Defer import errors of a ``with`` block: ``with try_import("prophet") as imports: import prophet``."""
    return DeferredImport(package, extra, needed_for)

"""Optional dependencies (prophet, darts, shap, …): imported when first needed, with an install hint when missing.

:func:`import_optional` imports a module inside the method that needs it (after Optuna's
``optuna/_imports.py``), so that importing raymlx, and building a model, which must stay
cheap, never pays for it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_optional", "install_hint"]


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

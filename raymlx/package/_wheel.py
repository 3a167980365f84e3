"""A wheel of the raymlx that runs this command, for images and CI runners that have no index serving raymlx."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import raymlx
from raymlx.errors import RaymlxError

__all__ = ["build_wheel"]

# What a build of raymlx reads besides the package itself.
_BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py", "MANIFEST.in")


def _source_root() -> Path:
    root = Path(raymlx.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise RaymlxError(f"raymlx at {root / 'raymlx'} is installed without its source (no pyproject.toml beside it); "
                          "packaging needs raymlx installed from a checkout: pip install -e PATH_TO_RAYMLX")
    return root


def build_wheel(dest: Path) -> Path:
    """Build a wheel of the running raymlx's source into ``dest``, replacing older raymlx wheels there.

    The source is copied to a temporary folder first, so the build leaves nothing in the checkout.

    Args:
        dest: Folder of the wheel; created when missing.

    Returns:
        The wheel's path.

    Raises:
        RaymlxError: When raymlx has no source to build from, or the build fails.
    """
    root = _source_root()
    with tempfile.TemporaryDirectory(prefix="raymlx-wheel-") as tmp:
        source, out = Path(tmp) / "src", Path(tmp) / "out"
        shutil.copytree(root / "raymlx", source / "raymlx", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in _BUILD_FILES:
            if (root / name).is_file():
                shutil.copy2(root / name, source / name)
        process = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out),
                                  str(source)], capture_output=True, text=True)
        if process.returncode != 0:
            raise RaymlxError(f"building the raymlx wheel failed: {process.stderr.strip()[-2000:]}")
        wheel = next(out.glob("raymlx-*.whl"))
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.glob("raymlx-*.whl"):
            old.unlink()
        return Path(shutil.copy2(wheel, dest / wheel.name))

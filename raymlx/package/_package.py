"""Writing a project's container build context and its scheduled retraining workflow."""

from __future__ import annotations

import logging
import re
import shlex
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template

from raymlx._files import refuse_existing, write_files
from raymlx.errors import UserInputError
from raymlx.package._needs import Needs, find_needs
from raymlx.package._wheel import build_wheel
from raymlx.spec_io import LoadedSpec

__all__ = ["DEFAULT_BASE_IMAGE", "DEFAULT_CRON", "Packaged", "package_project"]

logger = logging.getLogger(__name__)

DEFAULT_BASE_IMAGE = "python:3.11-slim"
DEFAULT_CRON = "0 4 * * 1"  # Mondays, 04:00 UTC
WHEEL_DIR = "wheels"
WORKFLOW = Path(".github", "workflows", "retrain.yml")
_TEMPLATES = files("raymlx.package") / "templates"


class _Fill(Template):
    delimiter = "%"  # Dockerfiles and workflows use ``$`` themselves


@dataclass(frozen=True)
class Packaged:
    """What ``raymlx package`` wrote.

    Attributes:
        output: The build context (the folder ``docker build`` is run on).
        files: Paths written, relative to ``output``.
        needs: The extras and distributions installed besides raymlx.
    """

    output: Path
    files: list[Path]
    needs: Needs


def _render(template: str, **values: str) -> bytes:
    return _Fill((_TEMPLATES / template).read_text()).substitute(values).encode("utf-8")


def _project_path(project: Path, output: Path) -> str:
    """The project's folder relative to the build context, which must hold it."""
    if not project.is_relative_to(output):
        raise UserInputError(f"--output {output}: the build context must contain the spec's folder {project} "
                             "(use the spec's folder or a folder above it)")
    return project.relative_to(output).as_posix() or "."


def _install_args(wheel: str, needs: Needs, requirements: str | None) -> str:
    extras = f"[{','.join(needs.extras)}]" if needs.extras else ""
    args = [f"{wheel}{extras}", *needs.packages] + (["-r", requirements] if requirements else [])
    return " ".join(shlex.quote(a) if a.startswith("-") else f'"{a}"' for a in args)


def _warn_outside_repository_root(output: Path) -> None:
    for parent in output.parents:
        if (parent / ".git").exists():
            logger.warning("GitHub reads workflows only from the repository root's .github/workflows; "
                           "%s is below the root %s: move %s there or package with -o %s",
                           output, parent, WORKFLOW, parent)
            return


def _contents(loaded: LoadedSpec, output: Path, wheel: Path, needs: Needs, cron: str, base_image: str) -> dict:
    project_dir = Path(loaded.base_dir).resolve()
    project = _project_path(project_dir, output)
    has_requirements = (project_dir / "requirements.txt").is_file()
    wheel_name = f"{WHEEL_DIR}/{wheel.name}"
    values = {"name": loaded.spec.name, "project": project, "wheel_dir": WHEEL_DIR, "base_image": base_image,
              "cron": cron, "python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    requirements_copy = (f"COPY {project}/requirements.txt /tmp/raymlx-wheels/requirements.txt\n"
                         if has_requirements else "")
    dockerfile = _render("Dockerfile.tmpl", **values, requirements_copy=requirements_copy, install_args=_install_args(
        f"/tmp/raymlx-wheels/{wheel.name}", needs, "/tmp/raymlx-wheels/requirements.txt" if has_requirements else None))
    # The serve section written in the spec is the sign that a deployment follows each retraining.
    serves = ("serve",) in loaded.positions
    reload_job = _render("reload-job.yml.tmpl", **values).decode() if serves else ""
    workflow = _render("retrain.yml.tmpl", **values, reload_job=reload_job, install_args=_install_args(
        wheel_name, needs, f"{project}/requirements.txt" if has_requirements else None))
    return {Path("Dockerfile"): dockerfile, Path(".dockerignore"): (_TEMPLATES / "dockerignore").read_bytes(),
            WORKFLOW: workflow}


def package_project(loaded: LoadedSpec, *, output: str | Path | None = None, base_image: str | None = None,
                    cron: str | None = None, force: bool = False) -> Packaged:
    """Write a Dockerfile, .dockerignore, a raymlx wheel and a scheduled retraining workflow.

    Args:
        loaded: The spec to package.
        output: The build context; default: the spec's folder. It must contain the spec's folder.
        base_image: Default of the Dockerfile's ``BASE_IMAGE`` build argument; default
            :data:`DEFAULT_BASE_IMAGE`.
        cron: When the workflow retrains (UTC, five cron fields); default :data:`DEFAULT_CRON`.
        force: Overwrite a Dockerfile, .dockerignore or workflow that exists.

    Returns:
        What was written.

    Raises:
        FilesExist: When one of the files exists and ``force`` is false.
        UserInputError: When a reference does not resolve, the cron is malformed, or the
            output does not contain the spec's folder.
        RaymlxError: When the raymlx wheel cannot be built.
    """
    base_image, cron = base_image or DEFAULT_BASE_IMAGE, cron or DEFAULT_CRON
    if len(cron.split()) != 5 or not re.fullmatch(r"[0-9*/,\- A-Za-z]+", cron):
        raise UserInputError(f"--cron: five fields (minute hour day month weekday) expected, but got {cron!r}")
    out = Path(output or loaded.base_dir).resolve()
    _project_path(Path(loaded.base_dir).resolve(), out)
    needs = find_needs(loaded)
    if not force:  # before the slow wheel build
        refuse_existing(out, (Path("Dockerfile"), Path(".dockerignore"), WORKFLOW))
    wheel = build_wheel(out / WHEEL_DIR)
    written = write_files(out, _contents(loaded, out, wheel, needs, cron, base_image), force=force)
    _warn_outside_repository_root(out)
    return Packaged(out, [*written, wheel.relative_to(out)], needs)

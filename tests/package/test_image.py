"""The packaged project's image really builds, on a base made from Debian packages, and tunes inside.

No Docker engine runs here and no image registry is reachable: podman builds with chroot
isolation on vfs storage (RUN steps work; running containers does not), the base image is
debootstrapped from this machine's own Debian mirror and imported, and pip inside the build
reaches the package index with this machine's pip configuration and CA certificates, mounted
read-only for the build only. The build runs the packaged Dockerfile with one step added at
its end: ``raymlx validate`` and a tiny ``raymlx tune``, as the image's unprivileged user.
"""

from __future__ import annotations

import ast
import configparser
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raymlx.cli import app
from raymlx.scaffold import scaffold

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.skipif(not (shutil.which("podman") and shutil.which("debootstrap", path="/usr/sbin:/sbin:/usr/bin")),
                                 reason="needs podman and debootstrap (Debian packages; .ci/run installs them)")]

BASE = "localhost/raymlx-test-base:bookworm"  # kept between runs: debootstrap takes about 35 s
IMAGE = "localhost/raymlx-test-packaged:latest"
PODMAN = ["podman", "--storage-driver", "vfs"]
SUITE = "bookworm"


def _apt_mirror() -> str:
    """The Debian mirror this machine's apt uses for the suite (one-line or deb822 sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
               *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    for path in (p for p in sources if p.is_file()):
        text = path.read_text()
        for line in text.splitlines():  # deb [options] URI suite components
            match = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if match and match.group(2) == SUITE:
                return match.group(1)
        for stanza in re.split(r"\n\s*\n", text):  # deb822: URIs: ... / Suites: ...
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.M))
            if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    pytest.fail(f"no apt source for {SUITE} in {', '.join(map(str, sources))}")


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    process = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert process.returncode == 0, f"{' '.join(command)}\n{process.stdout[-5000:]}\n{process.stderr[-5000:]}"
    return process


@pytest.fixture(scope="module")
def base_image(tmp_path_factory) -> str:
    """A minimal Debian with python3 and venv, as a local image: no registry needed."""
    if subprocess.run([*PODMAN, "image", "exists", BASE]).returncode == 0:
        return BASE
    root = tmp_path_factory.mktemp("base") / "rootfs"
    _run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip", SUITE, str(root),
          _apt_mirror()], timeout=600)
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    _run([*PODMAN, "import", "-", BASE], stdin=tar.stdout, timeout=300)
    assert tar.wait() == 0
    shutil.rmtree(root)
    return BASE


def _pip_mounts(folder: Path) -> list[str]:
    """``-v`` options that give a build this machine's pip configuration and CA certificates, read-only.

    ``pip config list`` merges every configuration file and the PIP_* environment; the merged
    values become one pip.conf, and the absolute paths they name (certificates, constraints,
    local wheels and indexes) are mounted where they are here.
    """
    config = configparser.ConfigParser(interpolation=None)
    listing = _run([sys.executable, "-m", "pip", "config", "list"]).stdout
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        section, _, name = key.rpartition(".")
        section = "global" if section == ":env:" else section
        if not config.has_section(section):
            config.add_section(section)
        config.set(section, name, ast.literal_eval(value))
    with open(folder / "pip.conf", "w") as file:
        config.write(file)
    mounted = [Path(p) for p in ("/etc/ssl/certs", "/usr/local/share/ca-certificates") if Path(p).is_dir()]
    for section in config.sections():
        for value in config[section].values():
            for word in value.split():
                path = Path(word.removeprefix("file://"))
                if path.name == "simple":  # a local index: its pages link to files beside simple/
                    path = path.parent
                if path.is_absolute() and path.exists() and not any(path.is_relative_to(m) for m in mounted):
                    mounted.append(path)
    return ["-v", f"{folder / 'pip.conf'}:/etc/pip.conf:ro", *(f"-v={p}:{p}:ro" for p in mounted)]


def _size_mb(image: str) -> float:
    return int(_run([*PODMAN, "image", "inspect", "--format", "{{.Size}}", image]).stdout) / 1e6


def test_the_packaged_scaffold_builds_and_tunes_inside_the_image(tmp_path, base_image):
    project = tmp_path / "shop"
    scaffold(project, template="tabular")
    packaged = CliRunner().invoke(app, ["package", str(project / "specs.yaml")])
    assert packaged.exit_code == 0, packaged.output
    # The packaged Dockerfile and one more step, run as the image's user on what the image holds.
    check = tmp_path / "Dockerfile.check"
    check.write_text((project / "Dockerfile").read_text() + (
        "RUN id -u && raymlx validate specs.yaml && raymlx tune specs.yaml --set validation.folds=2 "
        "--set models.ridge.search.num_samples=2 --set models.random_forest.search.num_samples=1 "
        "--set models.polynomial_ridge.search.num_samples=1\n"))
    started = time.monotonic()
    try:
        inside = _run([*PODMAN, "build", "--isolation", "chroot", "--layers=false", "--build-arg",
                       f"BASE_IMAGE={base_image}", *_pip_mounts(tmp_path), "-f", str(check), "-t", IMAGE,
                       str(project)], timeout=840).stdout
        assert re.search(r"^10001$", inside, flags=re.M)  # the image's user, not root
        assert "specs.yaml: valid (3 models, 250 rows)" in inside
        assert "registered as models:/shop@champion (version 1)" in inside
        print(f"\nimage {IMAGE}: {_size_mb(IMAGE):.0f} MB on the {_size_mb(base_image):.0f} MB base; "
              f"built and checked in {time.monotonic() - started:.0f} s")
    finally:
        subprocess.run([*PODMAN, "rmi", "--force", IMAGE], capture_output=True)

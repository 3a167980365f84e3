"""A Ray runtime left running (``ray start --head``) for the warm contender, stopped by its own processes' ids."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

__all__ = ["ray_head", "TOKEN_ENV"]

# Ray 2.60 turns token authentication on for `ray start` when a token exists (~/.ray/auth_token), and a
# driver given an explicit address sends it only when told to.
TOKEN_ENV = {"RAY_AUTH_MODE": "token"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_of(session: str) -> list[int]:
    """Every process whose command line names the session's folder (Ray's daemons; their workers end with them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if session.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def ray_head(cpus: int) -> Iterator[str]:
    """Start a local head node on free ports; yield its address; stop only its processes (never ``ray stop``,
    which stops every runtime of the machine)."""
    port = _free_port()
    temp = f"/tmp/raymlx-warm-{port}"  # its own: the processes to stop are those naming it (short: socket paths)
    ray = str(Path(sys.executable).with_name("ray"))
    done = subprocess.run([ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                           "--temp-dir", temp,
                           "--num-cpus", str(cpus), "--include-dashboard", "false", "--disable-usage-stats",
                           "--ray-client-server-port", str(_free_port()), "--dashboard-port", str(_free_port()),
                           "--dashboard-agent-listen-port", str(_free_port())],
                          env={**os.environ, **TOKEN_ENV}, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"ray start failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _processes_of(temp + "/"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(2)
        shutil.rmtree(temp, ignore_errors=True)

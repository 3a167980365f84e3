"""A Ctrl-C Python drops (raised inside a callback it runs on its own) is raised again at the next checkpoint."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

DROPPED_INTERRUPT = """
import os, signal, sys, weakref
from raymlx._interrupts import checkpoint, remembered

class Thing:
    pass

def interrupted_cleanup():  # as an import's module-lock cleanup is, when Ctrl-C lands in it
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000):  # the handler runs between two of these steps, inside this callback
        pass

with remembered():
    thing = Thing()
    weakref.finalize(thing, interrupted_cleanup)
    del thing
    print("went on", flush=True)
    try:
        {checkpoint}
    except KeyboardInterrupt:
        print("stopped at the checkpoint", flush=True)
        sys.exit(130)
print("ran to the end", flush=True)
"""


def _run(checkpoint: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DROPPED_INTERRUPT.replace("{checkpoint}", checkpoint)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_python_drops_an_interrupt_raised_inside_its_own_callback():
    done = _run("pass")
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr, done.stderr
    assert done.stdout.splitlines() == ["went on", "ran to the end"]


def test_the_checkpoint_raises_the_dropped_interrupt():
    done = _run("checkpoint()")
    assert done.returncode == 130, done.stderr
    assert done.stdout.splitlines() == ["went on", "stopped at the checkpoint"]


def test_a_checkpoint_without_ctrl_c_goes_on():
    done = subprocess.run([sys.executable, "-c", "from raymlx._interrupts import checkpoint, remembered\n"
                           "with remembered():\n    checkpoint()\nprint('ok')"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr

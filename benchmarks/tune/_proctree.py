"""Wall time and peak memory of a command's whole process tree, read from /proc (Linux).

RSS counts a page once in every process that maps it: a Ray runtime's workers share the
libraries and the object store, so their RSS summed counts those many times. PSS splits each
shared page among the processes that map it, so the tree's PSS counts it once; its shared-memory
part (``Pss_Shmem``) is the object store's resident pages, or joblib's memory-mapped arrays.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

__all__ = ["run_measured", "tree_pids"]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _memory(pid: int, page: int) -> tuple[int, int, int]:
    """A process's RSS, PSS and shared-memory PSS in bytes (PSS as RSS where smaps_rollup is missing)."""
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
    except (OSError, IndexError, ValueError):
        return 0, 0, 0
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
        return rss, int(fields["Pss"].split()[0]) * 1024, int(fields.get("Pss_Shmem", "0 kB").split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return rss, rss, 0


def tree_pids(root: int) -> list[int]:
    """A process and all its descendants."""
    tree, found, todo = _children(), [], [root]
    while todo:
        found.append(todo.pop())
        todo.extend(tree.get(found[-1], []))
    return found


def _tree_memory(root: int) -> tuple[int, int, int]:
    """RSS, PSS and shared-memory PSS of a process and all its descendants, summed."""
    totals, page = [0, 0, 0], os.sysconf("SC_PAGE_SIZE")
    for pid in tree_pids(root):
        for i, value in enumerate(_memory(pid, page)):
            totals[i] += value
    return totals[0], totals[1], totals[2]


def run_measured(command: list[str], *, cwd: str, env: dict | None = None, log: Path | None = None,
                 probe: Callable[[int], dict[str, int]] | None = None) -> dict:
    """Run a command; return its wall time (s), start time and its process tree's peaks (bytes): RSS summed
    (``peak_rss``), PSS (``peak_pss``) and shared-memory PSS (``peak_shm``), each at its own moment; with
    ``probe`` (called with the command's pid about once a second), the peak of each number it returns
    under ``peak_<name>`` (a probe that raises is skipped: what it asks may not be up yet)."""
    started = time.time()
    with open(log or os.devnull, "w") as sink:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        peaks, probed, done = [0, 0, 0], {}, threading.Event()

        def sample() -> None:
            probed_at = 0.0
            while not done.is_set():
                for i, value in enumerate(_tree_memory(process.pid)):
                    peaks[i] = max(peaks[i], value)
                if probe is not None and time.time() - probed_at >= 1:
                    probed_at = time.time()
                    try:
                        for name, value in probe(process.pid).items():
                            probed[name] = max(probed.get(name, 0), value)
                    except Exception:
                        pass
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        done.set()
        sampler.join()
    if code != 0:
        tail = "".join(Path(log).read_text().splitlines(keepends=True)[-20:]) if log else ""
        raise RuntimeError(f"{command} exited {code}; the end of its output:\n{tail}")
    return {"wall_s": time.time() - started, "peak_rss": peaks[0], "peak_pss": peaks[1], "peak_shm": peaks[2],
            "started_at": started, **{f"peak_{name}": value for name, value in probed.items()}}

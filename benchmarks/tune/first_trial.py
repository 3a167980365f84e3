"""The start of ``raymlx tune``, traced: when the first trial began and the CPU-seconds every process of the run
had spent by then, by kind of process (the driver, Ray's workers, agents, GCS, raylet).

    python benchmarks/tune/first_trial.py [--code old=/path/to/checkout new=/path/to/other] [--repeat 2]

Runs the cheap-trial example (``cheap.py``, 12 trials per model, report and baseline off) once per code checkout
and repeat, alternating checkouts so that pairs share the machine's load; each run in a fresh copy with a fresh
sqlite store. The first trial is the first trial run's start in MLflow (what run.py counts; ``in_workers``: the
first in Ray's workers, ``on_driver``: how many the driver evaluated). CPU time is sampled from /proc every 20 ms:
a process's time until its last sample before the first trial (``cpu_run_s``: the whole run's, until its last sample).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proctree import tree_pids  # noqa: E402
from cheap import MODELS, write_example  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
KINDS = [("dashboard/agent.py", "dashboard agent"), ("runtime_env/agent", "runtime-env agent"),
         ("gcs_server", "GCS"), ("raylet", "raylet"), ("default_worker.py", "workers"), ("ray::", "workers"),
         ("raymlx.cli", "driver")]


def _kind(pid: int) -> str:
    try:
        line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    return next((kind for mark, kind in KINDS if mark in line), "other")


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return -1.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _first_trials(folder: Path) -> tuple[float, float, int]:
    """When the first trial started, when the first trial in Ray's workers did, how many the driver evaluated."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cheap-trials")
    runs = client.search_runs([experiment.experiment_id], "tags.`raymlx.role` = 'trial'", max_results=5000)
    on_driver = [r for r in runs if r.data.tags.get("raymlx.evaluated_on") == "driver"]
    in_workers = [r for r in runs if r not in on_driver]
    return (min(r.info.start_time for r in runs) / 1000, min(r.info.start_time for r in in_workers) / 1000,
            len(on_driver))


def trace(code: str, example: Path, workdir: Path, trials: int) -> dict:
    """One run of ``raymlx tune`` with ``code`` first on the path: seconds to the first trial, CPU-s by kind then."""
    folder = workdir / f"run{time.monotonic_ns()}"
    shutil.copytree(example, folder)
    sets = [x for model in MODELS for x in ("--set", f"models.{model}.search.num_samples={trials}")]
    command = [sys.executable, "-m", "raymlx.cli", "tune", "specs.yaml", "--set", "report.enabled=false",
               "--set", "baseline=false", *sets]
    code, *settings = code.split(":")
    env = {**os.environ, "PYTHONPATH": code, **dict(setting.split("=", 1) for setting in settings)}
    samples: list[tuple[float, dict[int, tuple[str, float]]]] = []
    kinds: dict[int, str] = {}
    started = time.time()
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None:
        now, cpu = time.time(), {}
        for pid in tree_pids(process.pid):
            if kinds.get(pid, "other") in ("other", "raylet"):  # a worker is the raylet's fork until it execs
                kinds[pid] = _kind(pid)
            cpu[pid] = (kinds[pid], _cpu(pid))
        samples.append((now, cpu))
        time.sleep(0.02)
    wall = time.time() - started
    first, first_in_workers, on_driver = _first_trials(folder)
    by_kind: dict[str, float] = {}
    latest: dict[int, tuple[str, float]] = {}
    for at, cpu in samples:
        if at > first:
            break
        latest.update(cpu)
    for kind, seconds in latest.values():
        by_kind[kind] = by_kind.get(kind, 0.0) + max(seconds, 0.0)
    final: dict[int, tuple[str, float]] = {}
    for _, cpu in samples:
        final.update(cpu)
    run_workers = [seconds for kind, seconds in final.values() if kind == "workers"]
    return {"first_trial_s": first - started, "in_workers_s": first_in_workers - started, "on_driver": on_driver,
            "wall_s": wall, "cpu_s": sum(by_kind.values()), **by_kind,
            "cpu_run_s": sum(max(s, 0.0) for _, s in final.values()), "workers_run_s": sum(run_workers),
            "worker_processes": len(run_workers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", nargs="+", default=[f"now={Path(__file__).resolve().parents[2]}"],
                        help="NAME=PATH of a raymlx checkout, one or more; PATH:VAR=VALUE:... sets variables too")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    codes = [c.split("=", 1) for c in args.code]
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        example = Path(tmp) / "example"
        write_example(example, 3000)
        for i in range(args.repeat):
            for name, path in codes:
                row = trace(path, example, Path(tmp), args.trials)
                print(f"{name:6} #{i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()

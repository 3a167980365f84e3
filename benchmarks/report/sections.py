"""Where a model's report section spends its time: each section drawn in this process, part by part.

    python benchmarks/report/sections.py [--spec examples/temperature/specs.yaml] [--models ridge neural_net]
                                        [--state FILE] [--cprofile N]

The spec is tuned once (no section drawn while it tunes), in a fresh copy of its folder (the run's result is kept
in ``--state``, default under the system's temp folder, so later calls draw again without tuning);
then each model's section is drawn here, as a report process would draw it, and logged to its run as the
run's driver does (not counted).
Printed per model: CPU and wall seconds of each part (search plots, diagnostics,
refit, explanations), the garbage collector's CPU seconds in it and, with ``--cprofile N``, the N
functions with the most cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pickle
import pstats
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tuned(spec: Path, state: Path):
    """The spec's copy, data and ``run_experiment`` result: tuned now, or read back from ``state``."""
    from raymlx.checks import validate
    from raymlx.experiment import run_experiment
    from raymlx.spec_io import load_spec

    if not state.is_file():
        folder = Path(tempfile.mkdtemp(prefix="raymlx-report-profile-"))
        shutil.copytree(spec.parent, folder, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".raymlx", "*.html"))
        loaded = load_spec(folder / spec.name)  # the report on: trials keep their predictions (none drawn here)
        result = run_experiment(loaded, validate(loaded))
        state.write_bytes(pickle.dumps((folder / spec.name, result)))
    path, result = pickle.loads(state.read_bytes())
    loaded = load_spec(path)
    return loaded, validate(loaded), result


class _Collections:
    """CPU seconds the garbage collector takes, by generation, while it is installed (:data:`gc.callbacks`)."""

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            generation = info["generation"]
            self.seconds[generation] = self.seconds.get(generation, 0.0) + time.process_time() - self._started

    def take(self) -> str:
        text = " ".join(f"gen{g} {s:.2f}" for g, s in sorted(self.seconds.items()))
        self.seconds = {}
        return text or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "temperature" / "specs.yaml")
    parser.add_argument("--state", type=Path, default=Path(tempfile.gettempdir()) / "raymlx-report-profile.pkl")
    parser.add_argument("--models", nargs="*", help="Models to draw (default: all, in leaderboard order).")
    parser.add_argument("--cprofile", type=int, default=0, help="Show the N costliest functions of each section.")
    args = parser.parse_args()
    loaded, frame, result = _tuned(args.spec.resolve(), args.state)
    import importlib

    from raymlx.report.collect import draw_section
    from raymlx.report.jobs import late_jobs, log_drawn
    from raymlx.report.live import FROZEN, PRELOAD

    for module in (*PRELOAD, FROZEN):  # as the fork server the report's processes come from
        importlib.import_module(module)

    rows = [r for r in result.leaderboard if not args.models or r.model in args.models]
    jobs = late_jobs(loaded, frame, result, rows)
    cpu = time.process_time()
    draw_section(jobs[0])  # lazy imports: what a report process pays once
    print(f"first section ({jobs[0].row.model}, drawn again below): cpu {time.process_time() - cpu:.2f} s", flush=True)
    total_cpu = total_wall = 0.0
    collections = _Collections()
    for job in jobs:
        profiler = cProfile.Profile() if args.cprofile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        drawn = draw_section(job)
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        section = log_drawn(result.tracking_uri, drawn)  # as the run's driver does, outside the report's processes
        total_cpu, total_wall = total_cpu + cpu, total_wall + wall
        parts = ", ".join(f"{k} {v:.2f}" for k, v in section.facts.get("part_cpu_seconds", {}).items())
        print(f"{job.row.model:22} cpu {cpu:6.2f} s  wall {wall:6.2f} s  charts {len(section.charts):2}  [{parts}]"
              f"  gc [{collections.take()}]", flush=True)
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.cprofile)
            print(out.getvalue())
    print(f"{'all':22} cpu {total_cpu:6.2f} s  wall {total_wall:6.2f} s")


if __name__ == "__main__":
    main()

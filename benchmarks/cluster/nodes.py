"""The cost of a second node: the temperature example tuned on one Ray node against two, on the same cores.

    python benchmarks/cluster/nodes.py [--trials 8] [--models ridge random_forest gradient_boosting] [--repeats 2]

Both clusters are started with ``ray start`` on this machine and stay up while the runs alternate between them:
one node of 2 CPUs, and a head and a worker node of 1 CPU each. Both run two trials at once on the same two
cores, so the two-node cluster cannot be faster: what it adds per trial is the price of spreading trials over
nodes (a second raylet and object store, the spec's folder and the data shipped to it, results coming back
over the network stack). Each layout's first run is a warm-up (it starts the workers) and is not counted. Each
run is ``raymlx tune --address`` in a fresh copy of the example, measured as ``benchmarks/tune/run.py`` measures
it: wall time, the time until its first trial started (the fixed start: spec, data, features, MLflow), the
sum of its trial fit times from MLflow, and the per-trial overhead, ``(2 x (wall - start) - sum of fits) /
trials``: the CPU time each trial costs beyond its own fits. From the two-node numbers the script estimates, on
paper, a 500-trial experiment on a 10-node cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tune"))
from _warm import TOKEN_ENV, _free_port, ray_head  # noqa: E402
from run import ROOT, _contender  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
SPEC = ROOT / "examples" / "temperature" / "specs.yaml"
MODELS = ["ridge", "random_forest", "gradient_boosting"]
LAYOUTS = {"one node, 2 CPUs": [2], "two nodes, 1 CPU each": [1, 1]}


@contextlib.contextmanager
def cluster(cpus: list[int]) -> Iterator[str]:
    """A head of ``cpus[0]`` CPUs and a worker node for each further entry, on free ports of 127.0.0.1; yields
    the address; stops only its own processes afterwards (the worker nodes' name the head's temp dir too)."""
    with ray_head(cpus[0]) as address:
        for count in cpus[1:]:
            done = subprocess.run([RAY, "start", f"--address={address}", f"--num-cpus={count}",
                                   "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                                   f"--dashboard-agent-listen-port={_free_port()}"],
                                  env={**os.environ, **TOKEN_ENV}, capture_output=True, text=True, timeout=180)
            if done.returncode != 0:
                raise RuntimeError(f"ray start failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        yield address


def measure(trials: int, models: list[str], repeats: int) -> dict[str, list[dict]]:
    """Every layout's counted runs, alternating between the layouts run after run."""
    quiet = ["--set", "report.enabled=false", "--set", "baseline=false"]
    raymlx = [sys.executable, "-m", "raymlx.cli", "tune"]
    runs: dict[str, list[dict]] = {name: [] for name in LAYOUTS}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        addresses = {name: stack.enter_context(cluster(cpus)) for name, cpus in LAYOUTS.items()}
        for attempt in range(repeats + 1):
            for name, address in addresses.items():
                row = _contender(f"{name} {attempt}", raymlx, quiet + ["--address", address], SPEC, Path(tmp), 2,
                                 ("rmse", "min"), trials, "seattle-temperature", models, None,
                                 env={**os.environ, **TOKEN_ENV})
                print(f"{row['name']}: {row['wall_s']:.1f} s{' (warm-up)' if attempt == 0 else ''}",
                      file=sys.stderr, flush=True)
                if attempt:
                    runs[name].append(row)
    return runs


def summary(runs: dict[str, list[dict]]) -> list[dict]:
    """Per layout: medians of wall time, fit time and per-trial overhead over its counted runs."""
    return [{"layout": name, "runs": len(rows), "trials": rows[0]["trials"],
             "wall_s": statistics.median(r["wall_s"] for r in rows),
             "start_s": statistics.median(r["first_trial_s"] for r in rows),
             "fit_s": statistics.median(r["fit_s"] for r in rows),
             "overhead_per_trial_s": statistics.median(
                 (2 * (r["wall_s"] - r["first_trial_s"]) - r["fit_s"]) / r["trials"] for r in rows)}
            for name, rows in runs.items()]


def estimate(rows: list[dict], *, trials: int = 500, nodes: int = 10, cores: int = 2) -> dict:
    """A ``trials``-trial experiment on ``nodes`` nodes of ``cores`` CPUs, on paper: the measured start, then each
    trial costs its mean fit time plus the measured two-node overhead, ``nodes x cores`` trials at once."""
    one, two = rows
    fit = two["fit_s"] / two["trials"]
    per_trial = fit + two["overhead_per_trial_s"]
    return {"trials": trials, "nodes": nodes, "cores": cores, "fit_per_trial_s": fit,
            "second_node_per_trial_s": two["overhead_per_trial_s"] - one["overhead_per_trial_s"],
            "wall_s": two["start_s"] + trials * per_trial / (nodes * cores),
            "one_node_wall_s": one["start_s"] + trials * (fit + one["overhead_per_trial_s"]) / cores}


def report(rows: list[dict], paper: dict, workload: str) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; workload: {workload}")
    head = (f"{'layout':24} {'runs':>4} {'trials':>6} {'wall s':>7} {'start s':>7} {'Σ fit s':>8} {'ovh/trial s':>11} "
            f"{'wall ÷ one node':>15}")
    print(head, "-" * len(head), sep="\n")
    for r in rows:
        print(f"{r['layout']:24} {r['runs']:4d} {r['trials']:6d} {r['wall_s']:7.1f} {r['start_s']:7.1f} "
              f"{r['fit_s']:8.1f} {r['overhead_per_trial_s']:11.2f} {r['wall_s'] / rows[0]['wall_s']:15.2f}")
    print(f"the second node adds {paper['second_node_per_trial_s']:.2f} s of CPU per trial; on paper, "
          f"{paper['trials']} trials of {paper['fit_per_trial_s']:.2f} s fits on {paper['nodes']} nodes x "
          f"{paper['cores']} cores: {paper['wall_s'] / 60:.1f} min (one such node: {paper['one_node_wall_s'] / 60:.1f} min)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per model")
    parser.add_argument("--models", nargs="*", default=MODELS, help="the example's models to tune")
    parser.add_argument("--repeats", type=int, default=2, help="counted runs per layout (after one warm-up)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    rows = summary(measure(args.trials, args.models, args.repeats))
    paper = estimate(rows)
    report(rows, paper, f"examples/temperature, {', '.join(args.models)}, {args.trials} trials each, MLflow on sqlite")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "estimate": paper}, indent=2))


if __name__ == "__main__":
    main()

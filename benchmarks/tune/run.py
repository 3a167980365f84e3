"""Tuning speed, side by side: raymlx against a hand-written Optuna loop, Optuna with n_jobs=2 and
scikit-learn's RandomizedSearchCV(n_jobs=2), on the same workload, folds, metric and MLflow logging.
RandomizedSearchCV takes scikit-learn estimators only, so it is compared with raymlx on that subset.

    python benchmarks/tune/run.py [--trials 4] [--spec examples/temperature/specs.yaml] [--models ridge ...]
        [--only raymlx optuna1 ...]

Every contender runs as its own command in a fresh copy of the example (its own sqlite MLflow
store) and is measured the same way: wall time and peak memory of its whole process tree; the
sum of its trial fit times and its best score, read back from MLflow; its first trial's start (the
first trial run's start in MLflow for raymlx; for the alternatives, which log a trial once it ends,
the moment their search loop begins, which they print).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proctree import run_measured  # noqa: E402
from _warm import TOKEN_ENV, ray_head  # noqa: E402

from raymlx.metrics import BUILTIN_METRICS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CORES = os.cpu_count() or 1


def _read_runs(folder: Path, spec_name: str) -> dict:
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(spec_name)
    runs = client.search_runs([experiment.experiment_id], "tags.`raymlx.role` = 'trial'", max_results=5000)
    done = [r for r in runs if "fit_time_s" in r.data.metrics]
    return {"trials": len(runs), "fit_s": sum(r.data.metrics["fit_time_s"] for r in done),
            "first_trial_at": min(r.info.start_time for r in runs) / 1000, "runs": done}


def _subset(spec: Path, models: list[str], algorithm: str | None) -> Path:
    """A copy of the spec beside it with only the named models, searched by ``algorithm`` if given."""
    document = yaml.safe_load(spec.read_text())
    document["models"] = {name: entry for name, entry in document["models"].items() if name in models}
    for entry in document["models"].values():
        if algorithm and entry.get("search", {}).get("algorithm") != "grid":
            entry.setdefault("search", {})["algorithm"] = algorithm
    subset = spec.with_name(f"{spec.stem}.subset.yaml")
    subset.write_text(yaml.safe_dump(document, sort_keys=False))
    return subset


def _contender(name: str, before: list[str], after: list[str], spec: Path, workdir: Path, parallel: int,
               scored: tuple[str, str], trials: int, experiment: str, models: list[str], algorithm: str | None,
               env: dict | None = None, probe=None) -> dict:
    """Run one contender as ``before SPEC after --set ...`` on ``models`` in its own copy of the example
    (``env`` and ``probe`` as :func:`_proctree.run_measured` takes them)."""
    folder = workdir / "".join(c if c.isalnum() else "_" for c in name)
    shutil.copytree(spec.parent, folder, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".raymlx"))
    spec_copy = _subset(folder / spec.name, models, algorithm)
    sets = [x for model in models for x in ("--set", f"models.{model}.search.num_samples={trials}")]
    measured = run_measured(before + [str(spec_copy)] + after + sets, cwd=str(folder), log=folder / "out.log",
                            env=env, probe=probe)
    runs = _read_runs(folder, experiment)
    wall, (metric, mode) = measured["wall_s"], scored
    return {"name": name, "models": models, "algorithm": algorithm, "wall_s": wall, "trials": runs["trials"], "fit_s": runs["fit_s"],
            "efficiency": runs["fit_s"] / (CORES * wall),
            "overhead_per_trial_s": (parallel * wall - runs["fit_s"]) / runs["trials"],
            "best": (min if mode == "min" else max)(r.data.metrics[metric] for r in runs["runs"]),
            "peak_mib": measured["peak_rss"] / 2**20,
            "peak_pss_mib": measured["peak_pss"] / 2**20, "shm_mib": measured["peak_shm"] / 2**20,
            **{f"{k.removeprefix('peak_')}_mib": v / 2**20 for k, v in measured.items()
               if k.startswith("peak_") and k not in ("peak_rss", "peak_pss", "peak_shm")},
            "first_trial_s": _first_trial_at(folder / "out.log", runs["first_trial_at"]) - measured["started_at"]}


def _first_trial_at(log: Path, logged: float) -> float:
    """When the alternative says its search loop began, else when the first trial run started in MLflow."""
    said = [float(line.split()[-1]) for line in log.read_text().splitlines() if line.startswith("first trial at ")]
    return said[0] if said else logged


def _ratio(row: dict, rows: list[dict]) -> float:
    """raymlx's wall time on the same models and search as ``row`` (the full set, or RandomizedSearchCV's
    scikit-learn subset searched at random) over ``row``'s."""
    ours = next((o["wall_s"] for o in rows if o["name"].startswith("raymlx") and o["models"] == row["models"]
                 and o["algorithm"] == row["algorithm"]), math.nan)
    return ours / row["wall_s"]


def _table(rows: list[dict]) -> str:
    head = f"{'contender':40} {'wall s':>7} {'trials':>6} {'Σ fit s':>8} {'η':>5} {'ovh/trial s':>11} {'best':>7} {'peak MiB':>9} {'1st trial s':>11} {'raymlx ÷ it':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name']:40} {r['wall_s']:7.1f} {r['trials']:6d} {r['fit_s']:8.1f} {r['efficiency']:5.2f} "
                     f"{r['overhead_per_trial_s']:11.2f} {r['best']:7.3f} {r['peak_mib']:9.0f} {r['first_trial_s']:11.1f} "
                     f"{_ratio(r, rows):11.2f}")
    return "\n".join(lines)


def compare(spec: Path, trials: int, *, only: list[str] | None = None, models: list[str] | None = None) -> list[dict]:
    """Run every contender (or those in ``only``) on ``spec``'s models, ``trials`` per model; one row each."""
    from raymlx.spec_io import load_spec

    loaded = load_spec(spec)
    experiment, metric = loaded.spec.experiment_name, loaded.spec.metric_spec.name
    mode = loaded.spec.metric_spec.mode or BUILTIN_METRICS[metric].mode
    every = [name for name in loaded.spec.models if models is None or name in models]
    sklearn = [name for name in every if loaded.spec.models[name].model.startswith("sklearn.")]
    alt = [sys.executable, str(Path(__file__).resolve().parent / "alternatives.py")]
    raymlx = [sys.executable, "-m", "raymlx.cli", "tune"]
    # Tuning of the spec's own models alone, as the alternatives do: no automatic baseline, no report
    # (the report's cost is benchmarks/report's).
    quiet = ["--set", "report.enabled=false", "--set", "baseline=false"]
    # key, label, command before the spec, after it, trials running at once, models, search algorithm
    # (on its subset raymlx searches at random, and RandomizedSearchCV fits the configurations it draws).
    contenders = [
        ("raymlx", "raymlx tune", raymlx, quiet, 2, every, None),
        ("optuna1", "optuna loop (1 process)", alt + ["optuna"], ["--n-jobs", "1"], 1, every, None),
        ("optuna2", "optuna n_jobs=2", alt + ["optuna"], ["--n-jobs", "2"], 2, every, None),
        ("raymlx-sklearn", "raymlx tune, scikit-learn, random", raymlx, quiet, 2, sklearn, "random"),
        ("randomized", "RandomizedSearchCV n_jobs=2, scikit-learn", alt + ["randomized"], [], 2, sklearn, "random"),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key, label, before, after, parallel, names, algorithm in contenders:
            if only and key not in only:
                continue
            rows.append(_contender(label, before, after, spec, Path(tmp), parallel, (metric, mode), trials,
                                   experiment, names, algorithm))
            print(f"{label}: {rows[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        if not only or "raymlx-warm" in only:
            rows.append(_warm(raymlx, quiet, spec, Path(tmp), (metric, mode), trials, experiment, every))
    return rows


def _warm(raymlx: list[str], quiet: list[str], spec: Path, workdir: Path, scored: tuple[str, str], trials: int,
          experiment: str, models: list[str]) -> dict:
    """raymlx tune joining a runtime left running (``ray start --head``): the second of two runs, as in a
    series of runs (the first one's start of the workers is not counted)."""
    label = "raymlx tune --address (runtime left running)"
    env = {**os.environ, **TOKEN_ENV}
    with ray_head(CORES) as address:
        for attempt in ("first", "second"):
            row = _contender(f"{label}, {attempt}", raymlx, quiet + ["--address", address], spec, workdir, 2, scored,
                             trials, experiment, models, None, env=env)
            print(f"{row['name']}: {row['wall_s']:.1f} s", file=sys.stderr, flush=True)
    return {**row, "name": label}


def report(rows: list[dict], workload: str) -> None:
    """Print the machine, its load, the workload and the table."""
    print(f"machine: {platform.machine()}, {CORES} cores, Python {platform.python_version()}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; workload: {workload}, MLflow on sqlite")
    print(_table(rows))
    print("ratio column: wall time of raymlx on the same models / the contender's (below 1: raymlx is faster).")
    others = [r for r in rows if not r["name"].startswith("raymlx") and not math.isnan(_ratio(r, rows))]
    if others:
        best = max(others, key=lambda r: _ratio(r, rows))
        print(f"raymlx ÷ best alternative: {_ratio(best, rows):.2f} ({best['name']}); "
              + ", ".join(f"÷ {r['name']}: {_ratio(r, rows):.2f}" for r in others))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "temperature" / "specs.yaml")
    parser.add_argument("--trials", type=int, default=4, help="trials per model (grids stop at their size)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="contenders to run: raymlx optuna1 optuna2 raymlx-sklearn randomized raymlx-warm")
    parser.add_argument("--models", nargs="*", default=None, help="the spec's models to tune (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from raymlx.spec_io import load_spec

    names = list(load_spec(args.spec).spec.models)
    unknown = sorted(set(args.models or ()) - set(names))
    if unknown:
        parser.error(f"--models: {', '.join(unknown)} not in {args.spec} (choose from {', '.join(names)})")
    rows = compare(args.spec, args.trials, only=args.only, models=args.models)
    report(rows, f"{args.spec.resolve().relative_to(ROOT)}, {args.trials} trials per model")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

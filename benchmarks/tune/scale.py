"""How tuning's cost grows with the data: raymlx against a hand-written Optuna loop and scikit-learn's
RandomizedSearchCV(n_jobs=2), on synthetic regression data of growing size.

    python benchmarks/tune/scale.py [--sizes 10000 100000 1000000] [--trials 3] [--only raymlx optuna1 randomized]

For each size, ``make_regression`` writes ``rows x 20`` columns to a Parquet file, and a spec tunes
three regressors on it (ridge on scaled features, a small histogram gradient boosting, a small random
forest; random search, 3-fold CV, MLflow on sqlite). Every contender fits the same configurations
on the same folds and runs as its own command, measured as in ``run.py``: wall time, peak memory of its
whole process tree (Ray's processes included) as RSS summed and as PSS (each shared page counted once),
the shared-memory part of that PSS (Ray's object store in memory, or joblib's memory-mapped arrays),
and, for raymlx, the peak its object store held (what overflowed its memory to disk included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proctree import _memory, tree_pids  # noqa: E402
from run import CORES, _contender  # noqa: E402

COLUMNS = 20
MODELS = {
    "ridge": {"model": "sklearn.linear_model:Ridge", "pipeline": "scaled",
              "space": {"alpha": {"type": "float", "low": 0.001, "high": 100.0, "log": True}}},
    "hist_gradient_boosting": {
        "model": "sklearn.ensemble:HistGradientBoostingRegressor", "params": {"early_stopping": False},
        "space": {"max_iter": {"type": "int", "low": 10, "high": 30},
                  "learning_rate": {"type": "float", "low": 0.05, "high": 0.3, "log": True},
                  "max_leaf_nodes": {"type": "int", "low": 7, "high": 31}}},
    "random_forest": {
        "model": "sklearn.ensemble:RandomForestRegressor", "params": {"n_jobs": 1, "max_samples": 0.05,
                                                                        "max_features": 0.5},
        "space": {"n_estimators": {"type": "int", "low": 5, "high": 15},
                  "max_depth": {"type": "int", "low": 4, "high": 8}}},
}


def object_store(root: int) -> dict[str, int]:
    """What the object store of the Ray runtime ``root`` started holds now (bytes; what did not fit in its
    memory and went to disk included), and what it spilled so far; asked of its raylet as ``ray memory`` does.

    Raises:
        LookupError: While no raylet runs under ``root``.
    """
    from raymlx._compat import object_store_usage

    for pid in tree_pids(root):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        address = next((a.split(b"=", 1)[1].decode() for a in args if a.startswith(b"--gcs-address=")), None)
        if address:
            usage = object_store_usage(address)
            if usage is None:
                raise LookupError("this Ray has no call for the object store's use")
            return usage
    raise LookupError("no Ray runtime yet")


class Timeline:
    """A probe for :func:`_proctree.run_measured` that also records, about once a second, the process tree's
    PSS, RSS summed and shared-memory PSS, and the object store's use where a Ray runtime runs (MiB, seconds
    since the first sample): where the peak happens."""

    def __init__(self, store: bool) -> None:
        self.samples: list[dict[str, float]] = []
        self._store = store
        self._first: float | None = None
        self._cpu: dict[int, float] = {}  # pid -> its user + system CPU seconds, as last seen
        self._names: dict[int, str] = {}  # pid -> its name, as last seen

    @property
    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process tree used, every process's as last sampled: a measure of the
        work done that the machine's other load changes little (the last second of each process is missed)."""
        return sum(self._cpu.values())

    @property
    def cpu_by_process(self) -> dict[str, float]:
        """:attr:`cpu_s` by process name (a Ray worker's name as last seen: its last task)."""
        found: dict[str, float] = {}
        for pid, seconds in self._cpu.items():
            found[self._names[pid]] = round(found.get(self._names[pid], 0.0) + seconds, 1)
        return found

    def __call__(self, root: int) -> dict[str, int]:
        now = time.time()
        self._first = self._first or now
        groups: dict[str, float] = {}
        anon: dict[str, float] = {}
        rss = pss = shm = 0
        for pid in tree_pids(root):
            p_rss, p_pss, p_shm = _memory(pid, os.sysconf("SC_PAGE_SIZE"))
            rss, pss, shm = rss + p_rss, pss + p_pss, shm + p_shm
            groups[_process_name(pid)] = groups.get(_process_name(pid), 0) + p_pss / 2**20
            anon[_process_name(pid)] = anon.get(_process_name(pid), 0) + _heap_pss(pid) / 2**20
            self._cpu[pid] = max(self._cpu.get(pid, 0.0), _cpu_seconds(pid))
            name = _process_name(pid)
            if name != "?" or pid not in self._names:  # a process reaped as it is read keeps its name
                self._names[pid] = name
        sample = {"t": round(now - self._first, 1), "pss": pss / 2**20, "rss": rss / 2**20, "shm": shm / 2**20,
                  "pss_by_process": {name: round(v) for name, v in groups.items()},
                  "anon_pss_by_process": {name: round(v) for name, v in anon.items()}}
        self.samples.append(sample)
        if not self._store:
            return {}
        usage = object_store(root)
        sample.update({name: value / 2**20 for name, value in usage.items()})
        return usage


def _heap_pss(pid: int) -> int:
    """A process's anonymous memory's PSS in bytes (its heap: no library, no object store page)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("Pss_Anon:")), 0)


def _cpu_seconds(pid: int) -> float:
    """A process's user + system CPU seconds so far (its reaped children's left out: they are sampled themselves)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_name(pid: int) -> str:
    """A process's name as ``ps -o comm`` shows it (Ray's workers show their task, e.g. ``ray::IDLE``)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def make_project(folder: Path, rows: int, trials: int) -> tuple[Path, int]:
    """A project of ``rows`` synthetic rows: its spec's path and the data's size in memory (bytes)."""
    import pandas as pd
    from sklearn.datasets import make_regression

    X, y = make_regression(n_samples=rows, n_features=COLUMNS, n_informative=10, noise=10.0, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(COLUMNS)]).assign(y=y)
    folder.mkdir(parents=True)
    data = folder.parent / f"{folder.name}.parquet"  # beside the project: each contender's copy reads the same file
    frame.to_parquet(data, index=False)
    models = {name: {"model": m["model"], **({"pipeline": m["pipeline"]} if "pipeline" in m else {}),
                     "params": m.get("params", {}),
                     "search": {"algorithm": "random", "num_samples": trials, "space": m["space"]}}
              for name, m in MODELS.items()}
    spec = {"name": f"scale-{rows}", "task": "regression", "data": {"uri": str(data), "target": "y"},
            "validation": {"strategy": "kfold", "folds": 3}, "metric": {"name": "rmse"},
            "tracking": {"uri": "sqlite:///mlflow.db"}, "pipelines": {"scaled": [{"step": "standard_scale"}]},
            "models": models}
    (folder / "specs.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder / "specs.yaml", int(frame.memory_usage(deep=True).sum())


def _measure(rows: int, trials: int, only: list[str] | None, workdir: Path, measured: list[dict],
             save: Path | None) -> None:
    spec, data_bytes = make_project(workdir / f"rows{rows}", rows, trials)
    alt = [sys.executable, str(Path(__file__).resolve().parent / "alternatives.py")]
    quiet = ["--set", "report.enabled=false", "--set", "baseline=false"]  # as run.py: the spec's models alone
    # The object store is asked without Ray's token: the probe is a process of its own.
    asked = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    contenders = [("raymlx", "raymlx tune", [sys.executable, "-m", "raymlx.cli", "tune"], quiet, 2, asked),
                  ("optuna1", "optuna loop (1 process)", alt + ["optuna"], ["--n-jobs", "1"], 1, None),
                  ("randomized", "RandomizedSearchCV n_jobs=2", alt + ["randomized"], [], 2, None)]
    for key, label, before, after, parallel, env in contenders:
        if only and key not in only:
            continue
        timeline = Timeline(store=env is not None)
        row = _contender(label, before, after, spec, workdir / f"rows{rows}-runs", parallel, ("rmse", "min"), trials,
                         f"scale-{rows}", list(MODELS), None, env=env, probe=timeline)
        measured.append({**row, "rows": rows, "data_mib": data_bytes / 2**20, "load": os.getloadavg()[1],
                         "cpu_s": timeline.cpu_s,
                         "cpu_by_process": timeline.cpu_by_process, "timeline": timeline.samples})
        print(f"{rows} rows, {label}: {row['wall_s']:.1f} s, {row['peak_pss_mib']:.0f} MiB", file=sys.stderr,
              flush=True)
        if save:  # after each contender: a long run stopped early keeps what it measured
            save.write_text(json.dumps(measured, indent=2))


def _table(rows: list[dict]) -> str:
    head = (f"{'rows':>9} {'data MiB':>8} {'contender':28} {'wall s':>7} {'CPU s':>7} {'Σ fit s':>8} {'best':>8} "
            f"{'RSS Σ MiB':>9} {'PSS MiB':>8} {'shm MiB':>8} {'store MiB':>9} {'spilled MiB':>11} {'raymlx ÷ it':>11} "
            f"{'CPU ÷ it':>8} {'load':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ours = next((o for o in rows if o["rows"] == r["rows"] and o["name"] == "raymlx tune"), None)
        wall, cpu = (ours["wall_s"], ours["cpu_s"]) if ours else (float("nan"), float("nan"))
        lines.append(f"{r['rows']:9d} {r['data_mib']:8.0f} {r['name']:28} {r['wall_s']:7.1f} {r['cpu_s']:7.1f} "
                     f"{r['fit_s']:8.1f} "
                     f"{r['best']:8.3f} {r['peak_mib']:9.0f} {r['peak_pss_mib']:8.0f} {r['shm_mib']:8.0f} "
                     f"{r.get('store_mib', 0):9.0f} {r.get('spilled_mib', 0):11.0f} "
                     f"{wall / r['wall_s']:11.2f} {cpu / r['cpu_s']:8.2f} {r.get('load', float('nan')):5.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="rows per data set")
    parser.add_argument("--trials", type=int, default=3, help="trials per model")
    parser.add_argument("--only", nargs="*", default=None, help="contenders to run: raymlx optuna1 randomized")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="work in this new folder, kept (each contender's log: out.log)")
    args = parser.parse_args()
    rows, before = [], os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            _measure(size, args.trials, args.only, args.keep or Path(tmp), rows, args.json)
    load = os.getloadavg()
    print(f"machine: {platform.machine()}, {CORES} cores, Python {platform.python_version()}; load average "
          f"{before[0]:.2f} before, {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} after; workload: {len(MODELS)} "
          f"regressors x {args.trials} trials, 3 folds, {COLUMNS} columns, MLflow on sqlite")
    print(_table(rows))
    print("ratio column: wall time of raymlx on the same data / the contender's (below 1: raymlx is faster); "
          "CPU ÷ it: the same for the CPU seconds of the process trees; "
          "load: the 5-minute load average as the contender ended.")


if __name__ == "__main__":
    main()

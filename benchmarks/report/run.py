"""What the report costs: the temperature example's `raymlx tune` with and without it, side by side.

    python benchmarks/report/run.py [--repeat 2] [--normal-priority] [--spec examples/temperature/specs.yaml]

Each run is its own `raymlx tune` command in a fresh copy of the example (its own sqlite MLflow
store). Runs alternate (off, on, off, on, ...) so that a busy spell of a shared machine falls on
both. Reported: the wall time of each command, the report's time after tuning as the command measured
it (the session's report/summary.json: each model's section is drawn while other models still tune,
so this is the wait for the last sections, the overview and the HTML), each section's own drawing
time (report s) and CPU time (in all, by part and by model), each model's SHAP time against its
budget, the machine's load average around each pair, the refit on the last fold that explanations need, and what refitting every fold would have cost instead of keeping
the best trial's predictions (the best trials' fit times, read back from MLflow).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
from mlflow.tracking import MlflowClient  # noqa: E402

from raymlx.report.live import PRIORITY_ENV  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TARGET = 0.15  # most the report may add to the run's wall time


def _tune(folder: Path, spec: Path, report: bool, env: dict[str, str] | None = None) -> float:
    shutil.copytree(spec.parent, folder, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".raymlx", "*.html"))
    command = [sys.executable, "-m", "raymlx.cli", "tune", str(folder / spec.name)]
    if not report:
        command += ["--set", "report.enabled=false"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    started = time.perf_counter()
    with open(folder / "out.log", "w") as log:
        subprocess.run(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - started


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _report_facts(folder: Path, experiment: str) -> dict:
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    session = client.search_runs([found.experiment_id], "tags.`raymlx.role` = 'session'")[0]
    summary = json.loads(Path(client.download_artifacts(session.info.run_id, "report/summary.json")).read_text())
    models = {}
    for run in client.search_runs([found.experiment_id], "tags.`raymlx.role` = 'model'"):
        section = json.loads(Path(client.download_artifacts(run.info.run_id, "report/section.json")).read_text())
        models[section["name"]] = section["facts"]
    trials = client.search_runs([found.experiment_id], "tags.`raymlx.role` = 'trial'", max_results=5000)
    best = {}
    for trial in trials:
        name, score = trial.data.tags["raymlx.model"], trial.data.metrics.get("rmse")
        if score is not None and (name not in best or score < best[name][0]):
            best[name] = (score, trial.data.metrics["fit_time_s"])
    return {"report_s": summary["summary"]["report_seconds"], "models": models, "timeline": summary.get("timeline_s", {}),
            "refit_every_fold_s": sum(fit for _, fit in best.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="Pairs of runs (off, on).")
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "temperature" / "specs.yaml")
    parser.add_argument("--keep", action="store_true", help="Keep the runs' folders (their reports, MLflow stores).")
    parser.add_argument("--normal-priority", action="store_true",
                        help=f"A third run each round: the report's processes at the driver's priority ({PRIORITY_ENV}=normal).")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="Another run each round, with the report on and this environment variable set.")
    args = parser.parse_args()
    spec = args.spec.resolve()
    import yaml

    document = yaml.safe_load(spec.read_text())
    experiment = (document.get("tracking") or {}).get("experiment") or document["name"]
    from raymlx.spec import ReportSpec

    budget = (document.get("report") or {}).get("time_budget_s", ReportSpec().time_budget_s)
    work = Path(tempfile.mkdtemp(prefix="raymlx-report-bench-"))
    variants = {"report at normal priority": {PRIORITY_ENV: "normal"}} if args.normal_priority else {}
    variants.update({f"report with {e}": dict([e.split("=", 1)]) for e in args.env})
    off, on, facts = [], [], []
    others: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(args.repeat):
        load = _load()
        off.append(_tune(work / f"off{i}", spec, report=False))
        on.append(_tune(work / f"on{i}", spec, report=True))
        facts.append(_report_facts(work / f"on{i}", experiment))
        print(f"pair {i}: without report {off[-1]:.1f} s, with report {on[-1]:.1f} s ({on[-1] / off[-1] - 1:+.1%}) "
              f"(report after tuning {facts[-1]['report_s']:.1f} s); load average {load} before, {_load()} after",
              flush=True)
        _print_timeline(facts[-1])
        for j, (name, env) in enumerate(variants.items()):
            others[name].append(_tune(work / f"variant{j}-{i}", spec, report=True, env=env))
            after = _report_facts(work / f"variant{j}-{i}", experiment)
            print(f"        {name} {others[name][-1]:.1f} s ({others[name][-1] / off[-1] - 1:+.1%}) "
                  f"(report after tuning {after['report_s']:.1f} s); load average {_load()} after", flush=True)
            _print_timeline(after)
    _print(off, on, facts, budget)
    for name, runs in others.items():
        print(f"RESULT, {name}: {_ratio(off, runs):+.1%} (median of pairs; {statistics.median(runs):.1f} s)")
    if args.keep:
        print(f"runs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def _print_timeline(facts: dict) -> None:
    print("        seconds after the last trial ended: " + ", ".join(f"{k} {v:.1f}" for k, v in facts["timeline"].items()))


def _ratio(off: list[float], on: list[float]) -> float:
    """The median over the rounds of what the report added to the round's run without it."""
    return statistics.median(b / a - 1 for a, b in zip(off, on))


def _print(off: list[float], on: list[float], facts: list[dict], budget: float) -> None:
    base, with_report = statistics.median(off), statistics.median(on)
    report = statistics.median(f["report_s"] for f in facts)
    drawn = statistics.median(sum(m.get("report_seconds", 0) for m in f["models"].values()) for f in facts)
    cpu = statistics.median(sum(m.get("report_cpu_seconds", 0) for m in f["models"].values()) for f in facts)
    print(f"\nraymlx tune, median of {len(off)}: without report {base:.1f} s, with report {with_report:.1f} s "
          f"({(with_report - base) / base:+.1%}); the report's time after tuning {report:.1f} s "
          f"({report / base:.1%} of the run); its sections' drawing {drawn:.1f} s in all ({cpu:.1f} s of CPU), "
          f"mostly while models tuned")
    parts: dict[str, float] = {}
    for model in facts[-1]["models"].values():
        for part, seconds in model.get("part_cpu_seconds", {}).items():
            parts[part] = parts.get(part, 0.0) + seconds
    print("sections' CPU by part (last run, all models): " + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()))
    print(f"refitting every fold of each best configuration would add {statistics.median(f['refit_every_fold_s'] for f in facts):.1f} s "
          f"(the best trials' fit times); the report keeps their predictions and refits the last fold only")
    print(f"\n{'model':22} {'report s':>8} {'CPU s':>6} {'last-fold refit s':>17} {'explainer':>18} {'SHAP CPU s':>10} {'rows':>5} "
          f"{'budget s':>8}")
    worst = 0.0
    for name, f in facts[-1]["models"].items():
        shap_s = max(x["models"][name].get("shap_seconds", 0.0) or 0.0 for x in facts)
        worst = max(worst, shap_s)
        print(f"{name:22} {f.get('report_seconds', 0):8.2f} {f.get('report_cpu_seconds', float('nan')):6.2f} "
              f"{f.get('refit_seconds', 0):17.2f} {f.get('explainer', '-'):>18} "
              f"{shap_s if f.get('shap_seconds') is not None else float('nan'):10.2f} {f.get('shap_rows', '-'):>5} {budget:8.1f}")
    print(f"\nlongest SHAP of any model in any run: {worst:.2f} s of CPU (budget {budget:g} s): "
          f"{'within' if worst <= budget else 'OVER'} budget")
    priorities = sorted({m.get("cpu_priority", "?") for f in facts for m in f["models"].values()})
    print(f"the report's processes ran at CPU priority: {', '.join(priorities)}")
    ratio = _ratio(off, on)
    print(f"\nRESULT: the report adds {ratio:+.1%} to raymlx tune's wall time (median of {len(off)} pairs' ratios; "
          f"medians {base:.1f} s -> {with_report:.1f} s, {with_report / base - 1:+.1%}; target <= +{TARGET:.0%}): "
          f"{'MET' if ratio <= TARGET else 'NOT MET'}")


if __name__ == "__main__":
    main()

"""The ``raymlx`` command line: the only module that prints and configures logging."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from raymlx.errors import RaymlxError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Find the best model for your data: tune every model of a spec on Ray, track in MLflow, serve the champion.")
out = Console()
if not out.is_terminal:
    out = Console(width=200)  # piped results stay one row per model
err = Console(stderr=True)
_state = {"debug": False, "verbose": False}

SpecArg = typer.Argument(..., help="The experiment spec (specs.yaml).")
SetOpt = typer.Option(None, "--set", help="Override a spec value: key.path=value (value parsed as YAML). Repeatable.")


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Ray's and MLflow's own output.")) -> None:
    _state.update(debug=debug, verbose=verbose)
    _configure_logging(verbose)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        for name in ("ray", "mlflow", "alembic", "optuna", "cmdstanpy", "prophet"):
            logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)  # failed trials are summarised by us


def _run(action: Callable[[], None]) -> None:
    """Run a command; bad input exits 2 with one compact message, other failures exit 1."""
    try:
        action()
    except RaymlxError as exc:
        if _state["debug"]:
            raise
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        if _state["debug"]:
            raise
        err.print(f"[red]error:[/red] {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def validate(spec: Path = SpecArg, set_: Optional[list[str]] = SetOpt) -> None:
    """Check a spec without starting Ray: schema, references, parameter names, data and folds."""
    def action() -> None:
        from raymlx.checks import validate as run_checks
        from raymlx.spec_io import load_spec

        loaded = load_spec(spec, overrides=set_)
        frame = run_checks(loaded)
        out.print(f"{spec}: valid ({len(loaded.spec.models)} models, {len(frame)} rows)", highlight=False)
    _run(action)


@app.command()
def tune(spec: Path = SpecArg, set_: Optional[list[str]] = SetOpt,
         address: Optional[str] = typer.Option(None, help="Ray cluster to join ('auto' or ray://host:10001); overrides runtime.address.")) -> None:
    """Tune every model of the spec concurrently, print the leaderboard, register the champion."""
    def action() -> None:
        from raymlx.checks import validate as run_checks
        from raymlx.spec_io import load_spec
        from raymlx.tune import run_experiment

        loaded = load_spec(spec, overrides=set_)
        frame = run_checks(loaded)
        with Live(_progress_table({}), console=err, refresh_per_second=4, transient=False) as live:
            result = run_experiment(loaded, frame, address=address, verbose=_state["verbose"],
                                    on_progress=lambda models: live.update(_progress_table(models)))
        _print_result(result, loaded.spec)
    _run(action)


@app.command()
def schema(output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout.")) -> None:
    """Print the JSON Schema of specs.yaml (for editor completion and checks)."""
    from raymlx.spec import Spec

    text = json.dumps(Spec.model_json_schema(), indent=2) + "\n"
    if output is None:
        out.print(text, end="", highlight=False, markup=False, soft_wrap=True)
    else:
        output.write_text(text)


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4g}"


def _progress_table(models: dict) -> Table:
    table = Table(title="tuning", title_justify="left")
    for column in ("model", "done", "failed", "running", "best so far", "wall s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for p in models.values():
        table.add_row(p.name, f"{p.done}/{p.budget}", str(p.failed), str(p.running), _fmt(p.best), f"{p.wall_time_s:.0f}")
    return table


def _print_result(result, spec) -> None:
    metric = spec.metric_spec.name
    table = Table(title=f"leaderboard ({metric}, {spec.validation.folds if spec.strategy != 'holdout' else 1} folds)",
                  title_justify="left")
    for column in ("rank", "model", f"{metric} mean ± std", "best params", "trials", "failed", "wall s"):
        table.add_column(column, justify="left" if column in ("model", "best params") else "right")
    for rank, row in enumerate(result.leaderboard, 1):
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.params.items())
        table.add_row(str(rank), row.model, f"{_fmt(row.score)} ± {_fmt(row.score_std)}", params or "-",
                      str(row.trials), str(row.failed), f"{row.wall_time_s:.1f}")
    out.print(table)
    for row in result.leaderboard:
        if row.failed:
            out.print(f"{row.model}: {row.failed} of {row.trials} trials failed; last: {row.last_error}",
                      highlight=False, soft_wrap=True)
    if result.champion_uri:
        out.print(f"champion: {result.champion} registered as {result.champion_uri} "
                  f"(version {result.champion_version}) in {result.tracking_uri}", highlight=False, soft_wrap=True)
    else:
        out.print("no champion: every trial failed", highlight=False)
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()

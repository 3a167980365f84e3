"""The ``raymlx`` command line: the only module that prints and configures logging."""

from __future__ import annotations

import gc
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


def _run(action: Callable[[], None], cleanup: Callable[[], None] | None = None,
         interrupted: Callable[[KeyboardInterrupt], str] = lambda exc: "interrupted") -> None:
    """Run a command; bad input exits 2 with one compact message, other failures exit 1, Ctrl-C 130.

    ``cleanup`` runs after the message is printed, so a slow cleanup does not hold it back;
    ``interrupted`` words the message of a Ctrl-C.
    """
    try:
        action()
    except RaymlxError as exc:
        if _state["debug"]:
            raise
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        err.print(interrupted(exc), highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        if _state["debug"]:
            raise
        err.print(f"[red]error:[/red] {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        if cleanup is not None:
            cleanup()


@app.command()
def validate(spec: Path = SpecArg, set_: Optional[list[str]] = SetOpt) -> None:
    """Check a spec without starting Ray: schema, references, parameter names, data and folds."""
    def action() -> None:
        from raymlx.checks import validate as run_checks
        from raymlx.spec_io import load_spec

        loaded = load_spec(spec, overrides=set_)
        frame = run_checks(loaded)
        rows = len(frame) if frame is not None else 0
        out.print(f"{spec}: valid ({len(loaded.spec.models)} models, {rows} rows)", highlight=False)
    _run(action)


@app.command()
def tune(spec: Path = SpecArg, set_: Optional[list[str]] = SetOpt,
         address: Optional[str] = typer.Option(None, help="Ray cluster to join ('auto' or ray://host:10001); overrides runtime.address."),
         resume: bool = typer.Option(False, "--resume", help="Continue the spec's last interrupted session (its MLflow runs, Tune's saved state).")) -> None:
    """Tune every model of the spec concurrently, print the leaderboard, register the champion; Ctrl-C stops (resumable)."""
    started, specs = [], []

    def action() -> None:
        from raymlx.runtime import BackgroundRuntime
        from raymlx.spec_io import load_spec

        loaded = load_spec(spec, overrides=set_)
        specs.append(loaded.spec)
        # Ray starts (about 4 s) while the heavy imports, the checks and the features run.
        started.append(BackgroundRuntime(loaded.spec.runtime, address=address, base_dir=loaded.base_dir,
                                         verbose=_state["verbose"]))
        from raymlx.checks import validate as run_checks
        from raymlx.experiment import run_experiment

        frame = run_checks(loaded)
        with Live(_progress_table({}), console=err, refresh_per_second=4, transient=False) as live:
            result = run_experiment(loaded, frame, runtime=started[0], verbose=_state["verbose"], resume=resume,
                                    on_progress=lambda models: live.update(_progress_table(models)))
        _print_result(result, loaded.spec)

    def stop_ray() -> None:  # after an error's message is printed: it waits for Ray's start to finish
        for runtime in started:
            runtime.shutdown()

    def interrupted(exc: KeyboardInterrupt) -> str:
        from raymlx.experiment import ExperimentInterrupted, planned_trials

        done, total = (exc.done, exc.total) if isinstance(exc, ExperimentInterrupted) else (
            0, planned_trials(specs[0]) if specs else 0)
        again = " ".join(["raymlx tune", str(spec), *(f"--set {s}" for s in set_ or []), "--resume"])
        return f"interrupted after {done} of {total} trials; resume with: {again}"
    _run(action, cleanup=stop_ray, interrupted=interrupted)


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


@app.command("serve")
def serve_command(
        spec: Optional[Path] = typer.Argument(None, help="The experiment spec: serves its registered champion."),
        model: Optional[str] = typer.Option(None, "--model", help="Serve this MLflow model instead (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model)."),
        tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store of --model; default: the spec's tracking.uri, else $MLFLOW_TRACKING_URI."),
        set_: Optional[list[str]] = SetOpt,
        address: Optional[str] = typer.Option(None, help="Ray cluster to join; overrides runtime.address."),
        detach: bool = typer.Option(False, "--detach", help="Leave the server running in the background and return."),
        stop: bool = typer.Option(False, "--stop", help="Stop the running server (the spec's serve.port names which)."),
        reload: bool = typer.Option(False, "--reload", help="Roll the running server to the version the alias names now.")) -> None:
    """Serve the champion (or --model) on Ray Serve: /predict, /forecast, /health, /metadata, /docs; Ctrl-C stops."""
    def action() -> None:
        from raymlx import serve

        if stop or reload:
            port = _serve_request(spec, model, tracking_uri, set_, address).port if spec else None
            state = serve.stop(port) if stop else serve.reload(port)
            out.print(f"{'stopped' if stop else 'now serving version ' + str(state['version']) + ' at'} {state['url']}",
                      highlight=False)
            return
        request = _serve_request(spec, model, tracking_uri, set_, address)
        if detach:
            argv = [a for a in sys.argv[1:] if a != "--detach"]
            state = serve.detach(argv, request)
            out.print(f"serving version {state['version']} at {state['url']} (pid {state['pid']}; "
                      f"`raymlx serve --stop` ends it)", highlight=False, soft_wrap=True)
            return
        serve.serve_foreground(request, on_ready=lambda url, version: out.print(
            f"serving {request.model_uri} (version {version}) at {url}  (docs: {url}/docs; Ctrl-C stops)",
            highlight=False, soft_wrap=True))
        err.print("stopped")
    _run(action)


def _serve_request(spec: Optional[Path], model: Optional[str], tracking_uri: Optional[str],
                   set_: Optional[list[str]], address: Optional[str]):
    """What to serve: the spec's champion and serve section, or --model with default serve settings."""
    from raymlx.errors import UserInputError
    from raymlx.champion import CHAMPION_ALIAS
    from raymlx.serve import ServeRequest
    from raymlx.spec import DEFAULT_TRACKING_URI, RuntimeSpec, ServeSpec
    from raymlx.tracking import resolve_tracking_uri

    if spec is None and model is None:
        raise UserInputError("name a spec (serves its champion) or --model URI")
    if spec is not None:
        from raymlx.spec_io import load_spec

        loaded = load_spec(spec, overrides=set_)
        base, serve_spec, runtime = loaded.base_dir, loaded.spec.serve, loaded.spec.runtime
        uri = tracking_uri or resolve_tracking_uri(loaded.spec.tracking.uri, base)
        model = model or f"models:/{loaded.spec.registered_model_name}@{CHAMPION_ALIAS}"
    else:
        from raymlx.spec_io import apply_overrides

        from pydantic import ValidationError

        sections: dict = {"serve": {}, "runtime": {}}
        apply_overrides(sections, set_ or [])  # --set serve.port=8080 works with --model too
        if set(sections) - {"serve", "runtime"}:
            raise UserInputError("with --model, --set takes only serve.* and runtime.* keys")
        try:
            base, serve_spec, runtime = os.getcwd(), ServeSpec(**sections["serve"]), RuntimeSpec(**sections["runtime"])
        except ValidationError as exc:
            raise UserInputError(f"--set: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or resolve_tracking_uri(DEFAULT_TRACKING_URI, base)
    assert model is not None  # a spec names its champion
    return ServeRequest(model, uri, serve_spec.host, serve_spec.port, serve_spec.model_dump(), runtime.model_dump(),
                        address, base)


def run() -> None:
    """The ``raymlx`` console command."""
    try:
        app()
    finally:
        # Spare the exit the collector's passes over everything the ML libraries allocated (about
        # 1 s here); exit handlers still run and objects are still freed.
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    run()

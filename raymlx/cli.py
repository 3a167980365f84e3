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
from rich.markup import escape
from rich.table import Table

from raymlx._interrupts import checkpoint, remembered
from raymlx.errors import RaymlxError, redact

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
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a "View run ... at" line per run
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
        with remembered():  # a Ctrl-C Python dropped during an import is raised at the next checkpoint
            action()
    except RaymlxError as exc:
        if _state["debug"]:
            raise
        err.print(f"[red]error:[/red] {escape(redact(str(exc)))}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        err.print(escape(redact(interrupted(exc))), highlight=False, soft_wrap=True)  # it repeats --set values
        raise typer.Exit(130) from None
    except Exception as exc:
        if _state["debug"]:
            raise
        err.print(f"[red]error:[/red] {type(exc).__name__}: {escape(redact(str(exc)))} (run with --debug for the traceback)",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        if cleanup is not None:
            cleanup()


@app.command()
def validate(spec: Path = SpecArg, set_: Optional[list[str]] = SetOpt,
             offline: bool = typer.Option(False, "--offline", help="Skip asking the tracking server.")) -> None:
    """Check a spec without starting Ray: schema, references, parameter names, data, folds, the tracking server."""
    def action() -> None:
        from raymlx.checks import validate as run_checks
        from raymlx.spec_io import load_spec

        loaded = load_spec(spec, overrides=set_)
        frame = run_checks(loaded, tracking=not offline)
        rows = len(frame) if frame is not None else 0
        out.print(f"{spec}: valid ({len(loaded.spec.models)} models, {rows} rows)", highlight=False)
    _run(action)


@app.command()
def tune(spec: Path = SpecArg, set_: Optional[list[str]] = SetOpt,
         address: Optional[str] = typer.Option(None, help="Ray cluster to join ('auto' or ray://host:10001); overrides runtime.address."),
         force_promote: bool = typer.Option(False, "--force-promote", help="Give the winner the champion alias even if it does not beat the current champion."),
         resume: bool = typer.Option(False, "--resume", help="Continue the spec's last interrupted session (its MLflow runs, Tune's saved state)."),
         decision_file: Optional[Path] = typer.Option(None, "--decision-file", help="Append the promotion gate's decision as key=value lines (promoted, version, alias, model_uri, reason) to this file, e.g. \"$GITHUB_OUTPUT\".")) -> None:
    """Tune every model of the spec concurrently, print the leaderboard, register the champion; Ctrl-C stops (resumable)."""
    started, specs = [], []

    def action() -> None:
        from raymlx.runtime import BackgroundRuntime
        from raymlx.spec_io import load_spec

        if decision_file is not None and not decision_file.parent.is_dir():  # before hours of tuning
            from raymlx.errors import UserInputError

            raise UserInputError(f"--decision-file {decision_file}: the folder {decision_file.parent} does not exist")
        loaded = load_spec(spec, overrides=set_)
        specs.append(loaded.spec)
        # Ray starts (about 4 s) while the heavy imports, the checks and the features run.
        started.append(BackgroundRuntime(loaded.spec.runtime, address=address, base_dir=loaded.base_dir,
                                         verbose=_state["verbose"]))
        from raymlx.checks import validate as run_checks
        from raymlx.head_start import head_start

        frame = run_checks(loaded)
        checkpoint()
        # The features, then the first trial in a thread of this process while Ray starts and MLflow is imported.
        head = head_start(loaded, frame, trials_on_driver=started[0].local and not resume,
                          ray_ready=started[0].ready)
        from raymlx.experiment import run_experiment
        from raymlx.report import LiveReport

        with LiveReport(loaded, frame) as report:  # each model's section is drawn as soon as its trials end
            result = _with_progress(lambda on_progress: run_experiment(
                loaded, frame, runtime=started[0], verbose=_state["verbose"], force_promote=force_promote,
                resume=resume, on_progress=on_progress, on_model_end=report.on_model_end, head=head))
            if decision_file is not None and result.champion_uri:  # before the report, which may fail
                from raymlx.champion.promotion import write_decision

                write_decision(decision_file, promoted=result.promoted, version=str(result.champion_version),
                               model_uri=result.champion_uri, reason=str(result.promotion))
            _print_result(result, loaded.spec, report=lambda: _tune_report(report, result))

    def stop_ray() -> None:  # after an error's message is printed: it waits for Ray's start to finish
        for runtime in started:
            runtime.shutdown()

    def interrupted(exc: KeyboardInterrupt) -> str:
        again = " ".join(["raymlx tune", str(spec), *(f"--set {s}" for s in set_ or []), "--resume"])
        early = f"interrupted before the first trial; resume with: {again}"
        done = getattr(exc, "done", None)  # an ExperimentInterrupted's
        if done is None and not specs:
            return early  # before the spec was read: nothing to count
        try:
            from raymlx.experiment import planned_trials

            total = exc.total if done is not None else planned_trials(specs[0])  # type: ignore[attr-defined]
        except Exception:  # a Ctrl-C inside an import (pandas' extensions) leaves that module unusable
            return early
        return f"interrupted after {done or 0} of {total} trials; resume with: {again}"
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


@app.command("init")
def init_command(
        directory: Path = typer.Argument(..., help="Folder of the new project; created when missing."),
        template: str = typer.Option("tabular", "--template", "-t", help="tabular (regression on a table) or forecasting (a daily series)."),
        force: bool = typer.Option(False, "--force", help="Overwrite the template's files where they exist.")) -> None:
    """Start a project that validates and tunes as it is: specs.yaml, sample data, models.py, features.py, README."""
    def action() -> None:
        from raymlx.scaffold import scaffold

        written = scaffold(directory, template=template, force=force)
        out.print(f"created {directory}: {', '.join(str(p) for p in written)}", highlight=False, soft_wrap=True)
        out.print(f"next: cd {directory} && raymlx validate specs.yaml && raymlx tune specs.yaml "
                  "(README.md says what to change)", highlight=False, soft_wrap=True)
    _run(action)


@app.command("package")
def package_command(
        spec: Path = SpecArg,
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="The build context (default: the spec's folder); it must contain the spec's folder."),
        base_image: Optional[str] = typer.Option(None, "--base-image", help="Default of the Dockerfile's BASE_IMAGE build argument (default: python:3.11-slim)."),
        cron: Optional[str] = typer.Option(None, "--cron", help="When the workflow retrains, UTC cron (default: '0 4 * * 1', Mondays 04:00)."),
        force: bool = typer.Option(False, "--force", help="Overwrite a Dockerfile, .dockerignore or workflow that exists.")) -> None:
    """Write a Dockerfile (one image that tunes, reports and serves), .dockerignore and a scheduled retraining workflow."""
    def action() -> None:
        from raymlx.package import package_project
        from raymlx.spec_io import load_spec

        loaded = load_spec(spec)
        packaged = package_project(loaded, output=output, base_image=base_image, cron=cron, force=force)
        needs = packaged.needs
        out.print(f"wrote {', '.join(str(p) for p in packaged.files)} in {packaged.output}", highlight=False, soft_wrap=True)
        out.print(f"extras: {', '.join(needs.extras) or 'none'}; other packages: {', '.join(needs.packages) or 'none'}",
                  highlight=False, soft_wrap=True)
        out.print(f"build: docker build -t {loaded.spec.name} {packaged.output}", highlight=False, soft_wrap=True)
    _run(action)


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4g}"


def _progress_table(models: dict) -> Table:
    table = Table(title="tuning", title_justify="left")
    for column in ("model", "done", "failed", "running", "best so far", "wall s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for p in models.values():
        table.add_row(p.name, f"{p.done}/{p.budget}", str(p.failed), str(p.running), _fmt(p.best), f"{p.wall_time_s:.0f}")
    return table


def _tune_report(report, result) -> None:
    """Finish the report of the run that just ended (unless the spec turns it off) and say where it is."""
    if not report.enabled:
        return
    with err.status("writing the report (charts and explanations per model)"):
        path = report.finish(result)
    out.print(f"report: {path} (and in MLflow: the session run's report.html, each model run's plots/)",
              highlight=False, soft_wrap=True)


@app.command()
def report(spec: Path = SpecArg, set_: Optional[list[str]] = SetOpt,
           run: Optional[str] = typer.Option(None, "--run", help="Session run id; default: the experiment's latest."),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file to write; default: the spec's report.output."),
           tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store; default: the spec's tracking.uri.")) -> None:
    """Rebuild a session's HTML report from MLflow alone (charts, explanations, leaderboard); opens offline."""
    def action() -> None:
        from raymlx.report import load_report, write_html
        from raymlx.spec_io import load_spec
        from raymlx.tracking import resolve_tracking_uri

        loaded = load_spec(spec, overrides=set_)
        uri = tracking_uri or resolve_tracking_uri(loaded.spec.tracking.uri, loaded.base_dir)
        built = load_report(loaded, tracking_uri=uri, run_id=run)
        path = write_html(built, output or Path(loaded.base_dir) / loaded.spec.report.output)
        out.print(f"report of session run {built.summary.get('session_run')}: {path}", highlight=False, soft_wrap=True)
    _run(action)


def _with_progress(run: Callable):
    """Run with the progress table redrawn live on a terminal; elsewhere (a file, CI) one summary line at the end."""
    if err.is_terminal:
        with Live(_progress_table({}), console=err, refresh_per_second=4, transient=False) as live:
            return run(lambda models: live.update(_progress_table(models)))
    latest: dict = {}
    result = run(latest.update)
    done, failed = sum(p.done for p in latest.values()), sum(p.failed for p in latest.values())
    starts = [p.started_at for p in latest.values() if p.started_at is not None]
    wall = max((p.ended_at or p.started_at or 0.0) for p in latest.values()) - min(starts) if starts else 0.0
    models = f"{len(latest) - 1} models and the baseline" if result.baseline in latest else f"{len(latest)} models"
    err.print(f"tuned {models}: {done} trials, {failed} failed, {wall:.1f} s", highlight=False)
    return result


def _skill(row) -> str:
    if row.baseline:
        return "baseline"
    return "-" if math.isnan(row.skill) else f"{row.skill:+.1%}"


def _runs_hint(result) -> str:
    from raymlx.tracking import runs_page

    url = runs_page(result.tracking_uri, result.experiment_id)
    if result.tracking_uri.startswith(("http://", "https://")):
        return f"runs: {url}"
    return f"runs: mlflow ui --backend-store-uri {result.tracking_uri}, then {url}"


def _print_result(result, spec, report: Callable[[], None] | None = None) -> None:
    metric = spec.metric_spec.name
    table = Table(title=f"leaderboard ({metric}, {spec.validation.folds if spec.strategy != 'holdout' else 1} folds)",
                  title_justify="left")
    for column in ("rank", "model", f"{metric} mean ± std", "vs baseline", "best params", "trials", "failed", "wall s"):
        table.add_column(column, justify="left" if column in ("model", "best params") else "right")
    for rank, row in enumerate(result.leaderboard, 1):
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.params.items())
        table.add_row(str(rank), row.model, f"{_fmt(row.score)} ± {_fmt(row.score_std)}", _skill(row), params or "-",
                      str(row.trials), str(row.failed), f"{row.wall_time_s:.1f}")
    out.print(table)
    if result.beats_baseline is False:
        err.print(f"warning: no model beats the baseline ('{result.baseline}' row); "
                  "the champion predicts no better than it", markup=False, highlight=False, soft_wrap=True)
    for row in result.leaderboard:
        if row.failed:
            out.print(f"{row.model}: {row.failed} of {row.trials} trials failed; last: {row.last_error}",
                      highlight=False, soft_wrap=True)
    if result.champion_uri:
        role = "champion" if result.promoted else "challenger"
        out.print(f"{role}: {result.champion} registered as {result.champion_uri} "
                  f"(version {result.champion_version}) in {result.tracking_uri}", highlight=False, soft_wrap=True)
        out.print(f"{'promoted' if result.promoted else 'not promoted; the champion stays'}: {result.promotion}"
                  f"{'' if result.promoted else ' (--force-promote promotes it anyway)'}", highlight=False,
                  soft_wrap=True)
        out.print(_runs_hint(result), highlight=False, soft_wrap=True)
        if report is not None:
            report()
    else:
        only_baseline = any(r.baseline and r.score == r.score for r in result.leaderboard)
        out.print("no champion: only the baseline scored (baseline: {may_win: true} lets it win)" if only_baseline
                  else "no champion: every trial failed", highlight=False, markup=False)
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
    from raymlx.store import resolve_tracking_uri

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

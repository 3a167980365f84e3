"""The report of a ``raymlx tune`` (command or Python API): each model's section drawn in a process of
its own as soon as that model's trials end, while other models still tune; the overview and the HTML
file once the run has ended."""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.forkserver
import os
import queue
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from raymlx.report._busy import watch
from raymlx.report._priority import give_mine, lowest_until
from raymlx.report.build import finish_report
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec
from raymlx.tracking import resolve_tracking_uri

__all__ = ["LiveReport", "report_after_tune", "first_fit_imports", "FIRST_FIT", "PRELOAD"]

# What the report's processes draw with (seconds of imports), imported once by the server they are forked from.
# Neither MLflow nor Ray: the driver reads each model's trials and logs what is drawn (raymlx.report.jobs).
PRELOAD = ("raymlx.report.collect", "raymlx.report.overview", "matplotlib.pyplot", "optuna.visualization.matplotlib",
           "optuna.importance", "sklearn.calibration", "shap")
IDLE = "raymlx.report._idle"  # the fork server's first import: from then on it runs at the lowest CPU priority
FROZEN = "raymlx.report._frozen"  # its last: what the imports made is left out of the garbage collector's scans
# What the first fit of a built-in model imports, by the pip requirement its class declares: imported once by the fork
# server rather than by each report process that refits one (Holt-Winters' statsmodels under Darts' exponential
# smoothing and theta: 0.44 s of CPU; Prophet's Stan interface: 0.08 s; Prophet itself logs an error at import
# without plotly, which the server would print: its model imports it quietly).
FIRST_FIT = {"darts": ("darts.models.forecasting.exponential_smoothing",), "prophet": ("cmdstanpy",)}
PRIORITY_ENV = "RAYMLX_REPORT_PRIORITY"  # "normal": the driver's CPU priority throughout; "lowest": the lowest until
# Tune ends, whatever else runs; default: the lowest until Tune ends or until other work keeps the machine busy


class LiveReport:
    """The report of one run, made while it runs; a context manager around the run.

    Pass :attr:`on_model_end` to :func:`raymlx.experiment.run_experiment`, then call :meth:`finish`
    with its result. The sections are drawn by processes forked from a server started on entry, that
    imports what the report draws with (matplotlib, shap, Optuna's plots) while Ray starts: Tune's
    driver keeps its interpreter to itself. With the report turned off in the spec, nothing starts.

    Attributes:
        submitted: When each model's section was handed over to be drawn (``time.time()``).
        timeline: When the last model's trials ended, when each section was drawn after that, and when other work
            made the report take its priority back, if it did (``time.time()``).
    """

    def __init__(self, loaded: LoadedSpec, frame: pd.DataFrame) -> None:
        self.loaded, self.frame = loaded, frame
        self.enabled = loaded.spec.report.enabled
        self.submitted: dict[str, float] = {}
        self.timeline: dict[str, float] = {}
        self._sections: dict[str, Future[Future]] = {}  # each section's drawing, once handed to the pool
        self._ended: dict[str, Any] = {}  # each ended model's leaderboard row
        self._overview: Future[Future] | None = None  # the overview's drawing, handed over once every model ended
        self._plan: list[dict] | None = None  # the fold plan it draws, for the summary too
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._writer: ThreadPoolExecutor | None = None  # logs each drawn section to its model's run
        self._tuned: Any = None  # an event the report's processes wait for to take their own priority back
        # Handing a job to the pool can start a report process, which waits for the fork server's imports (at the
        # lowest priority, they wait for idle cores): a thread does it, so Tune's loop never waits for the report.
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()

    def __enter__(self) -> LiveReport:
        if self.enabled:
            self._pool, self._tuned = _pool(fits=first_fit_imports(self.loaded.spec))
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="raymlx-report-log")
            threading.Thread(target=_hand_over, args=(self._jobs, self._pool, self._writer), name="raymlx-report",
                             daemon=True).start()
            if os.environ.get(PRIORITY_ENV, "auto") == "auto":
                threading.Thread(target=_yield_unless_busy, args=(self._tuned, self.timeline),
                                 name="raymlx-report-load", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        # after an error or Ctrl-C, sections not started are dropped
        if self._pool is not None and self._writer is not None:
            self._tuned.set()
            self._jobs.put(None)
            self._pool.shutdown(wait=exc[0] is None, cancel_futures=True)
            self._writer.shutdown(wait=exc[0] is None, cancel_futures=True)
            self._pool = self._writer = None

    @property
    def on_model_end(self):
        """The hook of :func:`raymlx.experiment.run_experiment`, ``None`` when the report is off."""
        return self._model_ended if self.enabled else None

    def _model_ended(self, ended) -> None:
        from raymlx.report.jobs import section_job

        # read from MLflow by the thread that hands it over: Tune's loop may be the one calling
        self._submit(ended.row.model, lambda: section_job(ended, self.frame, base_dir=self.loaded.base_dir,
                                                          tracking_uri=self._tracking_uri()))
        with self._lock:
            self._ended[ended.row.model] = ended.row
            last = len(self._ended) == len(ended.spec.models)
        if last:  # Tune has ended: the report's processes take their priority back, and draw the overview while
            self.timeline["tuning ended"] = time.time()  # the champion is refit and registered
            if self._tuned is not None:
                self._tuned.set()
            self._submit_overview(ended.spec, list(self._ended.values()))

    def _submit_overview(self, spec, rows: list) -> None:
        from raymlx.report.build import plan_of
        from raymlx.report.overview import draw_overview, metric_of
        from raymlx.select import ranked

        rows = ranked(rows, mode=metric_of(spec, self.loaded.base_dir).mode)
        scores = {row.model: list(row.fold_scores) for row in rows}
        start = str(self.frame.index.min()) if spec.task == "forecasting" else None
        with self._lock:
            if self._pool is None:
                return
            self._overview = Future()
            self._plan = plan_of(spec, self.frame)
            arguments = (spec, self.loaded.base_dir, scores, self._plan)
            self._jobs.put((self._overview, functools.partial(draw_overview, data_start=start), lambda: arguments, None))

    def _tracking_uri(self) -> str:
        return resolve_tracking_uri(self.loaded.spec.tracking.uri, self.loaded.base_dir)

    def _submit(self, name: str, job: Callable[[], Any]) -> None:
        """Hand a model's section over to be drawn from ``job()`` (its :class:`~raymlx.report.collect.SectionJob`),
        then logged to its run."""
        from raymlx.report.collect import draw_section
        from raymlx.report.jobs import log_drawn

        with self._lock:
            if self._pool is None or name in self._sections:
                return
            handed: Future[Future] = Future()
            self._sections[name] = handed
            self._jobs.put((handed, draw_section, lambda: (job(),), functools.partial(log_drawn, self._tracking_uri())))
            self.submitted[name] = time.time()
        handed.add_done_callback(lambda done: self._note_drawn(name, done))

    def _note_drawn(self, name: str, handed: Future) -> None:
        """Once a section handed to the pool is drawn, when (after tuning only: the report's tail)."""
        if handed.exception() is None:
            handed.result().add_done_callback(lambda _: "tuning ended" in self.timeline and self.timeline.setdefault(
                f"{name} drawn", time.time()))

    def finish(self, result) -> Path | None:
        """Draw the sections not drawn yet, wait for all, then log the overview and write the HTML file.

        Args:
            result: What :func:`raymlx.experiment.run_experiment` returned.

        Returns:
            The HTML file written, or ``None`` when the spec turns the report off.
        """
        if not self.enabled or self._pool is None:
            return None
        from raymlx.report.jobs import late_jobs

        self._tuned.set()  # (a resumed session's models end without the hook) what is left is all the run waits for

        rows = [row for row in result.leaderboard if row.model not in self._sections]
        for job in late_jobs(self.loaded, self.frame, result, rows):
            self._submit(job.row.model, functools.partial(_same, job))
        return finish_report(self.loaded, self.frame, result, sections=dict(self._sections), pool=self._pool,
                             overview=self._overview, plan=self._plan, timeline=self.timeline)


def report_after_tune(loaded: LoadedSpec, frame: pd.DataFrame, result) -> Path | None:
    """Make the whole report of a run that has ended: every section, the overview and the HTML file.

    Args:
        loaded: The spec that ran.
        frame: Its data, as validated.
        result: What :func:`raymlx.experiment.run_experiment` returned.

    Returns:
        The HTML file written, or ``None`` when the spec turns the report off.
    """
    with LiveReport(loaded, frame) as report:
        return report.finish(result)


def _hand_over(jobs: queue.SimpleQueue, pool: ProcessPoolExecutor, writer: ThreadPoolExecutor) -> None:
    """Submit each queued job to the pool, in order, until ``None`` comes.

    A job is ``(handed, function, arguments, then)``: ``function(*arguments())`` is drawn in the pool, and ``handed``
    gets the pool's future or, with ``then``, a future of ``then`` applied to what is drawn, on the writer's thread.
    """
    while (item := jobs.get()) is not None:
        handed, function, arguments, then = item
        try:
            drawn = pool.submit(function, *arguments())
        except Exception as exc:  # its MLflow runs unreadable, the pool shut down (an error, Ctrl-C), a process died
            handed.set_exception(exc)
            continue
        handed.set_result(drawn if then is None else _then(drawn, then, writer))


def _then(drawn: Future, step: Callable[[Any], Any], writer: ThreadPoolExecutor) -> Future:
    """A future of ``step`` applied, on the writer's thread, to what ``drawn`` holds once it is done."""
    done: Future = Future()

    def run() -> None:
        try:
            done.set_result(step(drawn.result()))
        except BaseException as exc:  # noqa: BLE001 - the drawing's or the step's error, cancellation: the caller's
            done.set_exception(exc)

    def hand(_: Future) -> None:
        try:
            writer.submit(run)
        except RuntimeError as exc:  # the writer was shut down: an error or Ctrl-C ended the run
            done.set_exception(exc)

    drawn.add_done_callback(hand)
    return done


def _same(value: Any) -> Any:
    return value


def _yield_unless_busy(tuned, timeline: dict[str, float]) -> None:
    """Once other work keeps the machine busy, the report's processes and the fork server they come from take the
    driver's priority back (when, in ``timeline``): at the lowest, other work would leave them nothing until Tune
    ends."""
    server = getattr(getattr(multiprocessing.forkserver, "_forkserver", None), "_forkserver_pid", None)
    if watch(tuned):
        timeline["priority back: other work"] = time.time()
        if server:
            give_mine(server)


def first_fit_imports(spec: Spec) -> list[str]:
    """Modules the first fit of the spec's built-in models imports (:data:`FIRST_FIT`), for the fork server to import."""
    from raymlx.models.base import MODEL_PACKAGE
    from raymlx.registry import resolve

    requirements: set[str] = set()
    for entry in spec.models.values():
        if isinstance(entry.model, str) and ":" not in entry.model:  # a built-in name: no user code imported here
            try:
                requirements.update(getattr(resolve(entry.model, default_package=MODEL_PACKAGE), "requirements", ()))
            except Exception:  # noqa: BLE001 - the spec's checks report unknown models; nothing to preload
                continue
    return [module for requirement in sorted(requirements) for module in FIRST_FIT.get(requirement, ())]


def _pool(*, fits: list[str] | None = None) -> tuple[ProcessPoolExecutor, Any]:
    """Processes forked, when each is needed, from a server that has imported what the report draws with.

    A fork of Tune's driver could inherit a lock another of its threads held (Ray's, MLflow's writer),
    and processes spawned afresh would each import for seconds: the fork server imports once, in a
    process of its own with one thread. Two at most, so a report never takes more than two cores from the trials;
    and the server and its processes run at the lowest CPU priority (:mod:`raymlx.report._priority`), so
    they draw with the cores' idle time (Tune's start, the tail where one trial runs), until the event returned
    with the pool is set (the last model's trials have ended): then each process takes its own priority back.

    Other work on the machine would leave them nothing until Tune ends: then the event is set early
    (:func:`_yield_unless_busy`). With ``RAYMLX_REPORT_PRIORITY=normal`` in the environment they keep the driver's
    priority throughout, with ``lowest`` the lowest until Tune ends, whatever else runs.

    Args:
        fits: Modules the refits of the spec's models import (:func:`first_fit_imports`), imported by the server too.
    """
    workers = min(2, os.cpu_count() or 1)
    lowest = os.environ.get(PRIORITY_ENV, "auto") != "normal"
    context: multiprocessing.context.BaseContext
    if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows: processes spawned afresh
        context = multiprocessing.get_context("spawn")
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([IDLE] * lowest + [*PRELOAD, *(fits or []), FROZEN])
        multiprocessing.forkserver.ensure_running()  # it imports while Ray starts, not when the first model ends
    # Also in each process: a fork server started earlier by other code does not preload the report's modules.
    tuned = context.Event()
    if not lowest:
        return ProcessPoolExecutor(workers, mp_context=context), tuned
    return ProcessPoolExecutor(workers, mp_context=context, initializer=lowest_until, initargs=(tuned,)), tuned

"""The Ray runtime a run uses: a cluster it joins, or a local runtime of its own started while the spec is checked."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path

import ray

from raymlx import _compat
from raymlx._processes import Watchdog
from raymlx.errors import UserInputError
from raymlx.spec import RuntimeSpec

__all__ = ["init_ray", "cluster_address", "shutdown_ray", "BackgroundRuntime", "trial_actor_env", "TRIAL_MODULES"]

_TUNE_ACTOR_ENV = ("PL_DISABLE_FORK", "1")
# glibc's malloc raises its threshold for serving an allocation from its own mapping as large blocks are freed,
# after which blocks of a few MiB (a fold's columns, a fit's work arrays) come from a heap it rarely gives back:
# a fixed threshold keeps trial workers' memory to what their fits use (at 1M rows, their heap's peak 707 -> 609
# MiB, the run's PSS 2094 -> 1965 MiB, with no more CPU). Read by each worker as it starts.
_WORKER_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", str(4 * 1024 * 1024))
# What a trial actor imports (Tune's function trainable with pandas, then raymlx's trainable with scikit-learn's
# base and metrics: about 1.8 CPU-seconds), imported by a lean runtime's prestarted workers while the driver
# sets up Tune; and how long they wait for Tune's actors before Ray may stop them as idle.
TRIAL_MODULES = ("ray.tune.trainable.function_trainable", "raymlx.trainable")
_KEEP_IDLE_S = 60.0
_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # what Ray's job manager gives a job's driver: its runtime env


def cluster_address(runtime: RuntimeSpec, address: str | None = None) -> str | None:
    """The Ray runtime a run joins: ``address``, else ``runtime.address``, else ``$RAY_ADDRESS`` (set in a Ray Job);
    ``None`` when the run starts one of its own."""
    return address or runtime.address or os.environ.get("RAY_ADDRESS")


def init_ray(runtime: RuntimeSpec, *, address: str | None = None, base_dir: str, verbose: bool = False,
             env_vars: dict[str, str] | None = None, lean: bool = False) -> bool:
    """Join the cluster named by ``address``, ``runtime.address`` or ``$RAY_ADDRESS`` (set in a Ray Job), else start a
    small local Ray runtime of this run's own, listening on 127.0.0.1 only, even where ``ray start`` left one running.

    Args:
        runtime: The spec's runtime section.
        address: The cluster to join, before ``runtime.address``.
        base_dir: The spec's folder: every worker's working directory.
        verbose: Ray's own logs on the console.
        env_vars: Environment of the processes this run's work starts on a cluster (a local runtime's
            processes inherit this process's environment instead).
        lean: Start a local runtime without the processes only a cluster or a dashboard uses (see
            :func:`raymlx._compat.lean_local_node`): the runtime of one ``raymlx tune``.

    Returns:
        Whether this call started Ray (and so should shut it down).
    """
    if ray.is_initialized():
        return False
    address = cluster_address(runtime, address)
    level = logging.INFO if verbose else logging.ERROR
    if address:
        runtime_env = {**_working_dir(base_dir), **({"env_vars": env_vars} if env_vars else {})}
        ray.init(address=address, log_to_driver=verbose, logging_level=level, runtime_env=runtime_env)
    else:
        # Every worker of a runtime started here inherits this process's environment: set what Tune
        # would give each trial actor as an environment of its own (see trial_actor_env).
        os.environ.setdefault(_TUNE_ACTOR_ENV[0], _TUNE_ACTOR_ENV[1])
        os.environ.setdefault(*_WORKER_MALLOC_ENV)  # this process's own allocator has read its settings already
        # Loopback only: the runtime serves this machine alone, and Ray's ports accept jobs (ShadowRay).
        lean_node = _compat.lean_local_node(log_monitor=verbose) if lean else nullcontext()
        warm = _compat.warm_workers(TRIAL_MODULES, keep_idle_s=_KEEP_IDLE_S) if lean else nullcontext()
        with _compat.prompt_node_wait(), _compat.loopback_node(), lean_node, warm:
            ray.init(address="local", num_cpus=runtime.num_cpus, include_dashboard=False, log_to_driver=verbose,
                     logging_level=level, object_store_memory=runtime.object_store_memory_mb * 1024 * 1024)
    return True


def _working_dir(base_dir: str) -> dict:
    """The spec's folder as every worker's working directory, unless the Ray Job this driver runs in ships one.

    Ray refuses a ``working_dir`` of the driver's own beside the job's (``ray job submit --working-dir``); the job's
    is the driver's current directory, so the spec's files reach the workers when the spec's folder lies inside it.
    """
    job = json.loads(os.environ.get(_JOB_CONFIG_ENV) or "{}")
    if not (job.get("runtime_env") or {}).get("working_dir"):
        return {"working_dir": base_dir, "excludes": ["mlflow.db", "mlartifacts/", ".raymlx/", ".venv/"]}
    job_dir = Path.cwd().resolve()
    if not Path(base_dir).resolve().is_relative_to(job_dir):
        raise UserInputError(f"the spec's folder {base_dir} is outside the Ray Job's working directory {job_dir}: "
                             "submit the job with --working-dir set to the spec's folder")
    return {}


def shutdown_ray() -> None:
    """``ray.shutdown()``, without its one-second wait on the autoscaler's monitor (see :mod:`raymlx._compat`).

    A runtime started here has a fixed size, so its monitor holds nothing and is stopped first.
    """
    _compat.stop_monitor()
    ray.shutdown()


class BackgroundRuntime:
    """:func:`init_ray` in a thread of its own, so the driver imports, checks the data and computes
    features while Ray's processes start (about 4 s on 2 cores, mostly on the other core).

    Linux ends a process started with a parent-death signal, as Ray's are, when the *thread* that
    started it ends: the thread therefore stays until :meth:`shutdown`. Ray's agents have no such
    signal: a :class:`~raymlx._processes.Watchdog` ends every process of a local runtime started
    here if this process dies without shutting it down (SIGKILL).
    """

    def __init__(self, runtime: RuntimeSpec, *, address: str | None = None, base_dir: str, verbose: bool = False):
        self._ready, self._released = threading.Event(), threading.Event()
        self._started, self._shut = False, False
        self._error: BaseException | None = None
        self._watchdog: Watchdog | None = None
        self._local = not cluster_address(runtime, address)
        _exit_on_sigterm()  # what ray.init does when it runs in the main thread
        self._thread = threading.Thread(target=self._hold, args=(runtime, address, base_dir, verbose),
                                        name="raymlx-ray-runtime", daemon=True)
        self._thread.start()

    def _hold(self, runtime: RuntimeSpec, address: str | None, base_dir: str, verbose: bool) -> None:
        try:
            if not (ray.is_initialized() or cluster_address(runtime, address)) and os.path.isdir("/proc"):
                self._watchdog = Watchdog()  # before Ray's processes start: a kill while they start is covered too
            self._started = init_ray(runtime, address=address, base_dir=base_dir, verbose=verbose, lean=True)
        except BaseException as exc:  # re-raised by wait() in the caller's thread
            self._error = exc
        finally:
            self._ready.set()
        self._released.wait()

    @property
    def local(self) -> bool:
        """Whether the run has a local runtime of its own (it joins no cluster)."""
        return self._local

    def wait(self) -> bool:
        """Block until Ray is up.

        Returns:
            Whether this object started the runtime (and so shuts it down).

        Raises:
            Whatever starting or joining Ray raised.
        """
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._started

    def ready(self) -> bool:
        """Whether Ray is up now (not waiting; ``False`` while it starts and when it failed to)."""
        return self._ready.is_set() and self._error is None

    def shutdown(self) -> None:
        """Shut down the runtime this object started, once its start has finished; safe to call twice."""
        self._ready.wait()
        if self._started and not self._shut:
            shutdown_ray()
        if self._watchdog is not None:
            self._watchdog.close()
        self._shut = True
        self._released.set()
        self._thread.join()


def _exit_on_sigterm() -> None:
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))


@contextmanager
def trial_actor_env(inherited: bool):
    """Let trial actors start in the workers Ray prestarts, when their environment is inherited.

    Tune gives every trial actor a runtime environment of its own (``PL_DISABLE_FORK=1``), and
    Ray starts a new worker process for an actor whose environment differs: the first trials
    wait about a second for it while the prestarted workers stay idle. On a runtime
    :func:`init_ray` started, every worker already has the variable, so Tune's copy is left out.
    """
    defaults = _compat.tune_actor_env_defaults()  # imports Tune (0.7 s): not before Ray's start
    saved = dict(defaults or {})
    if defaults is not None and inherited and saved == dict([_TUNE_ACTOR_ENV]):
        defaults.clear()
    try:
        yield
    finally:
        if defaults is not None:
            defaults.clear()
            defaults.update(saved)

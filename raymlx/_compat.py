"""Every use of Ray's and MLflow's private APIs, in one place, each guarded with a public fallback.

Each private use was measured to pay (the figures are in each function's docstring).
When an upgrade removes or changes one, the guarded path falls back to the public
API, slower but correct, and logs a warning once; ``tests/test_compat.py`` fails on
such an upgrade, naming what changed. :data:`CHECKED_RAY` lists the Ray releases
whose private APIs those tests passed on.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import ray

__all__ = ["CHECKED_RAY", "private_apis", "stop_monitor", "prompt_node_wait", "loopback_node", "lean_local_node",
           "tune_actor_env_defaults", "warm_workers", "empty_sqlite_store", "serve_target_groups",
           "versioned_deployment", "mlflow_metrics", "MAX_METRICS_PER_BATCH", "MAX_PARAMS_PER_BATCH",
           "object_store_usage", "keep_starting_actors"]

logger = logging.getLogger(__name__)

CHECKED_RAY = ("2.60",)


def __getattr__(name: str) -> int:
    """MLflow's own batch limits (``MAX_METRICS_PER_BATCH``, ``MAX_PARAMS_PER_BATCH``), the documented values
    otherwise; read when first asked for, as importing MLflow takes a second that the start of a run cannot spare."""
    if name not in ("MAX_METRICS_PER_BATCH", "MAX_PARAMS_PER_BATCH"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from mlflow.utils import validation
    except ImportError:  # pragma: no cover - depends on the installed MLflow
        return {"MAX_METRICS_PER_BATCH": 1000, "MAX_PARAMS_PER_BATCH": 100}[name]
    return int(validation.MAX_METRICS_PER_BATCH if name == "MAX_METRICS_PER_BATCH"
               else validation.MAX_PARAMS_TAGS_PER_BATCH)

_warned: set[str] = set()


def _fallback(name: str, exc: BaseException) -> None:
    if name not in _warned:
        _warned.add(name)
        logger.warning("Ray %s: %s is not available (%s: %s); using the public API instead (slower)",
                       ray.__version__, name, type(exc).__name__, exc)


def _module_with(module: str, attribute: str, what: str) -> Any:
    """The private ``module`` when it has ``attribute``; else ``None``, with a warning that ``what`` falls back."""
    try:
        found = importlib.import_module(module)
        getattr(found, attribute)
    except (ImportError, AttributeError) as exc:
        _fallback(what, exc)
        return None
    return found


def _monitor_processes() -> list[Any]:
    from ray._private import ray_constants, worker

    node = getattr(worker, "_global_node", None)
    if node is None:
        return []
    return [info.process for info in node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, [])]


def stop_monitor() -> None:
    """Stop the local runtime's autoscaler monitor before ``ray.shutdown()`` (1.35 s to 0.3 s at shutdown).

    Ray stops the GCS first; the monitor then spends its whole one-second grace period
    reporting to a GCS that is gone. Fallback: nothing (the second is spent).
    """
    try:
        processes = _monitor_processes()
    except (ImportError, AttributeError) as exc:
        _fallback("stopping the monitor", exc)
        return
    for process in processes:
        process.kill()


def _node_is_alive(gcs_address: str, node_id: str) -> Callable[[], bool]:
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    client, target = GcsClient(address=gcs_address), ray.NodeID.from_hex(node_id)

    def alive() -> bool:
        try:
            node = client.get_all_node_info(timeout=1).get(target)
        except Exception:  # noqa: BLE001 - the GCS may not answer yet; Ray's own call reports real failures
            return False
        return node is not None and node.state == 0  # GcsNodeInfo.ALIVE

    return alive


def _wait_for_node(gcs_address: str, node_id: str, *, timeout_s: float) -> None:
    """Return once the GCS lists the node as alive, asking every 20 ms, or after ``timeout_s``."""
    alive = _node_is_alive(gcs_address, node_id)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not alive():
        time.sleep(0.02)


@contextlib.contextmanager
def prompt_node_wait(timeout_s: float = 30) -> Iterator[None]:
    """Learn that a new local node has registered within 20 ms instead of up to a second (``ray.init``).

    Starting a node, Ray asks the GCS for it and, until the raylet has registered (about
    1.5 s here), sleeps a whole second between asks: on average half a second of an idle
    machine. Here the asks come every 20 ms first; Ray's own call then finds the node at
    once. Fallback: Ray's own one-second polling.
    """
    services = _module_with("ray._private.services", "get_node", "prompt node registration")
    if services is None:
        yield
        return
    original = services.get_node

    def get_node(gcs_address: str, node_id: str):
        try:
            _wait_for_node(gcs_address, node_id, timeout_s=timeout_s)
        except (ImportError, AttributeError) as exc:
            _fallback("prompt node registration", exc)
        return original(gcs_address, node_id)

    services.get_node = get_node
    try:
        yield
    finally:
        services.get_node = original


_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """Start a local runtime whose processes all listen on 127.0.0.1, never on every interface.

    Ray's servers (GCS, raylet, object manager, each worker's gRPC server, the dashboard and
    runtime-env agents) bind loopback when the node's IP address is ``127.0.0.1`` and every
    interface otherwise; on Linux ``ray.init`` turns a given ``127.0.0.1`` into the host's
    address unless Ray runs in its single-machine mode (the macOS and Windows default), chosen
    by ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``. Ray reads that variable when imported: the
    environment carries it to every process the runtime starts, and the driver's copy, read
    long before, is set here for the start. Fallback: the host's address (all interfaces).
    """
    constants = _module_with("ray._private.ray_constants", "ENABLE_RAY_CLUSTER", "loopback-only local runtime")
    if constants is None:
        yield
        return
    # Only this variable is restored after: the driver's other threads set theirs meanwhile (the tracking check).
    saved = os.environ.get(_SINGLE_MACHINE_ENV)
    os.environ[_SINGLE_MACHINE_ENV] = "0"
    try:
        with mock.patch.object(constants, "ENABLE_RAY_CLUSTER", False):
            yield
    finally:
        if saved is None:
            os.environ.pop(_SINGLE_MACHINE_ENV, None)
        else:
            os.environ[_SINGLE_MACHINE_ENV] = saved


_UNUSED_BY_ONE_DRIVER = ("start_api_server", "start_monitor")


@contextlib.contextmanager
def lean_local_node(*, log_monitor: bool) -> Iterator[None]:
    """Start a local runtime without the Python processes a fixed-size runtime of one driver never uses.

    ``ray.init`` starts an API server (with ``include_dashboard=False`` it serves usage statistics
    only) and waits until it has imported Ray's dashboard code and written its address, before it
    even starts the raylet; the autoscaler's monitor watches a cluster that cannot grow; the log
    monitor streams workers' output to a driver that does not show it (``log_monitor=False``). On
    2 cores that is CPU the driver's imports and the first trials wait for. Fallback: Ray's
    full set of processes.
    """
    node = _module_with("ray._private.node", "Node", "lean local runtime")
    skipped = [*_UNUSED_BY_ONE_DRIVER, *(() if log_monitor else ("start_log_monitor",))]
    if node is None or not all(hasattr(node.Node, name) for name in skipped):
        if node is not None:
            _fallback("lean local runtime", AttributeError(f"Node lacks one of {skipped}"))
        yield
        return
    with contextlib.ExitStack() as stack:
        for name in skipped:
            stack.enter_context(mock.patch.object(node.Node, name, lambda self, *args, **kwargs: None))
        yield


# Ray's settings (read by the raylet from its environment as it starts) that keep a local runtime's first workers.
_IDLE_KILL_ENV = "RAY_idle_worker_killing_time_threshold_ms"
_PRELOAD_ENV = "RAY_preload_python_modules"


@contextlib.contextmanager
def warm_workers(modules: tuple[str, ...], *, keep_idle_s: float) -> Iterator[None]:
    """Start a local runtime whose prestarted workers import ``modules`` at once and wait for the first work.

    The raylet starts one worker per CPU as it starts, and stops an idle worker after one second
    once the CPUs are reserved: Tune reserves them (its placement groups) a moment before it asks
    for its trial actors, so in some runs the prestarted workers were stopped just then, two new
    ones started, and the first trials waited for their whole start. With ``keep_idle_s`` they
    stay, and with ``modules`` (Ray's ``preload_python_modules``) they import what a trial needs
    while the driver sets up Tune. Ray reads both from the raylet's environment, set here for
    the start only. Fallback (settings Ray no longer reads): Ray's defaults.
    """
    saved = {name: os.environ.get(name) for name in (_IDLE_KILL_ENV, _PRELOAD_ENV)}
    os.environ[_IDLE_KILL_ENV] = str(int(keep_idle_s * 1000))
    if modules:
        os.environ[_PRELOAD_ENV] = ",".join(modules)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _raylet_reads(*settings: str) -> bool:
    """Whether the installed raylet knows these settings (their names are in its executable)."""
    services = importlib.import_module("ray._private.services")
    data = Path(services.RAYLET_EXECUTABLE).read_bytes()
    return all(name.encode() in data for name in settings)


def _empty_store_template(db_utils: Any) -> Path:
    """An empty sqlite store of the installed MLflow (its tables and schema revision, no experiment), made once."""
    import mlflow
    import sqlalchemy

    migrations = Path(mlflow.__file__).parent / "store" / "db_migrations" / "versions"
    revisions = hashlib.sha256("\n".join(sorted(os.listdir(migrations))).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "raymlx"
    template = cache / f"mlflow-{mlflow.__version__}-{revisions}-empty.db"
    if not template.exists():
        cache.mkdir(parents=True, exist_ok=True)
        building = cache / f".{template.name}.{os.getpid()}"
        engine = sqlalchemy.create_engine(f"sqlite:///{building}")
        try:
            db_utils._initialize_tables(engine)
            os.replace(building, template)
        finally:
            engine.dispose()
            building.unlink(missing_ok=True)
    return template


def empty_sqlite_store(tracking_uri: str) -> None:
    """Make a new sqlite tracking store as a copy of an empty one of the installed MLflow, made once in
    ``~/.cache/raymlx``, instead of MLflow's migrations of a new file: 1.6 to 1.9 CPU-seconds (and 5 to 8 s of
    writes to a busy disk) at the start of a run, against 0.5 for the copy. MLflow then adds its default
    experiment as it does to any store it opens. Does nothing for another store or an existing file.
    Fallback: MLflow's own migrations.
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or "?" in tracking_uri or ":memory:" in tracking_uri:
        return
    target = Path(tracking_uri[len(prefix):])
    if target.exists() or not target.parent.is_dir():
        return
    db_utils = _module_with("mlflow.store.db.utils", "_initialize_tables", "empty sqlite store")
    if db_utils is None:
        return
    try:
        template = _empty_store_template(db_utils)
        copying = target.with_name(f".{target.name}.{os.getpid()}")
        try:
            shutil.copyfile(template, copying)
            os.link(copying, target)  # never over a store another process made meanwhile
        finally:
            copying.unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001 - a speed-up only: MLflow makes the store itself
        logger.debug("no copy of an empty store for %s: %s", target, exc)


def tune_actor_env_defaults() -> dict[str, str] | None:
    """Tune's runtime environment for every trial actor (the dict itself), or ``None`` where it cannot be read.

    Clearing it on a runtime whose workers already have the variables lets trial actors
    start in the workers Ray prestarts (0.5 to 0.9 s sooner). Fallback: Tune's own
    per-actor environment (new worker processes).
    """
    try:
        from ray.tune.execution import class_cache

        defaults = class_cache.DEFAULT_ENV_VARS
    except (ImportError, AttributeError) as exc:
        _fallback("Tune's trial actor environment", exc)
        return None
    return defaults if isinstance(defaults, dict) else None


def serve_target_groups(app_name: str) -> list[tuple[str, int]] | None:
    """The HTTP addresses Serve's controller lists for an application (each replica's own port with
    direct ingress), or ``None`` where the controller cannot be asked.

    This is the list Serve's HAProxy mode is fed from; the relay in front of the replicas
    reads it every second. Fallback: the caller routes through Serve's proxy.
    """
    try:
        from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        groups = ray.get(controller.get_target_groups.remote(app_name), timeout=10)
        return [(t.ip, t.port) for g in groups if str(g.protocol).endswith("HTTP") for t in g.targets]
    except (ImportError, AttributeError) as exc:
        _fallback("Serve's target groups", exc)
        return None


def versioned_deployment(deployment: Any, *, version: str, **options: Any) -> Any:
    """``deployment.options(**options)`` with a code version, so a redeploy with the same options
    reconfigures each replica in place instead of restarting it (Serve's config deploys pass
    it the same way). Fallback: no version (every redeploy restarts the replicas).
    """
    try:
        return deployment.options(_internal=True, version=version, **options)
    except TypeError as exc:
        _fallback("versioned deployments", exc)
        return deployment.options(**options)


def mlflow_metrics(util: Any, values: dict[str, Any]) -> dict[str, float]:
    """The values Ray's MLflow callback logs as metrics: those that convert to float (Ray's own rule)."""
    parse = getattr(util, "_parse_dict", None)
    if parse is not None:
        return parse(values)
    _fallback("Ray's MLflow metric filter", AttributeError("_MLflowLoggerUtil._parse_dict"))
    converted = {}
    for key, value in values.items():
        with contextlib.suppress(ValueError, TypeError):
            converted[key] = float(value)
    return converted


@contextlib.contextmanager
def keep_starting_actors() -> Iterator[None]:
    """While Tune runs: a trial whose actor is still starting waits for it, and a finished trial's actor
    goes to a trial that has none.

    Tune (2.60) gives a finished trial's cached actor to a pending trial whose own actor is still
    starting, and kills that one. With trials shorter than an actor's start (a worker's imports,
    2 s or more), that repeats for the whole run: every new actor is killed before it is ready,
    one actor runs every trial one after the other, and the dying ones take CPU. On the cheap-trial
    benchmark that was half the runs (90 trials in one worker, 8 to 9 workers started and killed;
    the other runs: 2 workers). Fallback: Tune's own choice.
    """
    module = _module_with("ray.tune.execution.tune_controller", "TuneController", "keeping starting actors")
    original = getattr(getattr(module, "TuneController", None), "_maybe_reuse_cached_actor", None)
    if original is None:
        yield
        return

    def maybe_reuse(controller: Any, trial: Any) -> bool:
        try:
            starting = trial in controller._trial_to_actor and trial not in controller._resetting_trials
        except AttributeError as exc:
            _fallback("keeping starting actors", exc)
            starting = False
        return False if starting else original(controller, trial)

    module.TuneController._maybe_reuse_cached_actor = maybe_reuse
    try:
        yield
    finally:
        module.TuneController._maybe_reuse_cached_actor = original


# What each guarded use needs: (module, attribute path) pairs, and for versioned deployments a keyword.
_NEEDS: dict[str, list[tuple[str, str]]] = {
    "stop_monitor": [("ray._private.ray_constants", "PROCESS_TYPE_MONITOR"), ("ray._private.worker", "_global_node")],
    "prompt_node_wait": [("ray._private.services", "get_node"), ("ray._raylet", "GcsClient")],
    "loopback_node": [("ray._private.ray_constants", "ENABLE_RAY_CLUSTER")],
    "lean_local_node": [("ray._private.node", f"Node.{name}") for name in
                        (*_UNUSED_BY_ONE_DRIVER, "start_log_monitor")],
    "tune_actor_env": [("ray.tune.execution.class_cache", "DEFAULT_ENV_VARS")],
    "warm_workers": [("ray._private.services", "RAYLET_EXECUTABLE"), ("ray._private.utils", "try_import_each_module")],
    "serve_target_groups": [("ray.serve._private.constants", "SERVE_CONTROLLER_NAME"),
                            ("ray.serve._private.constants", "SERVE_NAMESPACE"),
                            ("ray.serve._private.controller", "ServeController.get_target_groups")],
    "versioned_deployment": [("ray.serve.deployment", "Deployment.options")],
    "mlflow_metrics": [("ray.air._internal.mlflow", "_MLflowLoggerUtil._parse_dict")],
    "empty_sqlite_store": [("mlflow.store.db.utils", "_initialize_tables")],
    "keep_starting_actors": [("ray.tune.execution.tune_controller", "TuneController._maybe_reuse_cached_actor")],
    "object_store_usage": [("ray._private.internal_api", "get_memory_info_reply"),
                           ("ray._private.internal_api", "get_state_from_address")],
}


def object_store_usage(gcs_address: str) -> dict[str, int] | None:
    """What the object store of the runtime at ``gcs_address`` holds now and has spilled so far (bytes), asked of
    its raylet as ``ray memory`` does; Ray has no public call for it. Only the data-scale benchmark asks, from a
    process outside the runtime; ``None`` (with a warning) where the private call is gone."""
    internal = _module_with("ray._private.internal_api", "get_memory_info_reply", "object_store_usage")
    if internal is None:
        return None
    with loopback_node():  # a raymlx runtime listens on 127.0.0.1, which Ray's client only reaches in this mode
        stats = internal.get_memory_info_reply(internal.get_state_from_address(gcs_address)).store_stats
    return {"store": stats.object_store_bytes_used, "spilled": stats.spilled_bytes_total}


def _has(module: str, path: str) -> bool:
    try:
        obj: Any = importlib.import_module(module)
        for part in path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return False
    if path == "Deployment.options":
        return "_internal" in inspect.signature(obj).parameters
    return True


def private_apis() -> dict[str, bool]:
    """Whether each private API raymlx uses is there in the installed Ray (``False``: its fallback is in use)."""
    found = {name: all(_has(module, path) for module, path in needs) for name, needs in _NEEDS.items()}
    found["warm_workers"] = found["warm_workers"] and _raylet_reads(_IDLE_KILL_ENV, _PRELOAD_ENV)
    return found

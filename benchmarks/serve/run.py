"""Serving benchmark: the same champion served four ways, driven by one load generator in one run.

    python benchmarks/serve/run.py [--seconds 10] [--workload all] [--servers raymlx uvicorn ...]
        [--skip-autoscaling] [--json FILE]

Servers (all on 127.0.0.1, one worker process each):

* ``raymlx serve`` as shipped: Serve's throughput-optimized mode (direct ingress) behind raymlx's relay;
* ``raymlx serve`` with Serve's defaults (``RAY_SERVE_THROUGHPUT_OPTIMIZED=0``,
  ``RAY_SERVE_ENABLE_DIRECT_INGRESS=0``): every request through Serve's own proxy;
* a plain FastAPI app under uvicorn (``plain_app.py``);
* ``mlflow models serve --env-manager local``.

Two champions, registered by raymlx in a fresh sqlite store (see ``WORKLOADS``): the
diabetes example's ridge regression with its scaling pipeline (under 1 ms a model call), and
a mean predictor (~0.2 ms a call, so that the HTTP layers are what is measured). Every
request predicts one row; each server is driven at 1 and 16 concurrent keep-alive
clients. ``raymlx serve`` keeps its one replica here (as the others have one worker).
Then a load step (0 -> 16 clients) against ``raymlx serve`` with ``max_replicas: 2``
measures how long the autoscaler takes to have a second replica running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from loadgen import LoadResult, run_load  # noqa: E402

from raymlx.serve._control import _free_port  # noqa: E402

DATA = ROOT / "examples" / "tabular" / "data" / "diabetes.csv"


WORKLOADS = {
    # The diabetes example's ridge regression with its cleaning and scaling pipeline: under 1 ms a call,
    # about half of it scikit-learn's checks of the input frame, nearly the same for 1 row or 32.
    "ridge+pipeline": "bench-pipeline",
    # A mean predictor without a pipeline: ~0.2 ms a call, so the HTTP layers are what is measured.
    "light (mean)": "bench-light",
}


def make_champions(work: Path) -> str:
    """Register both workloads' champions through raymlx's own registration; returns the store."""
    import mlflow
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import Ridge

    from raymlx.champion import fit_predictor
    from raymlx.pipeline import Pipeline
    from raymlx.champion import log_champion
    from raymlx.steps import FillMissing, StandardScale

    store = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_experiment("bench")
    frame = pd.read_csv(DATA)
    inputs = [c for c in frame.columns if c != "progression"]
    scaled = Pipeline([FillMissing(), StandardScale(columns=["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"])])
    for name, pipeline, model in [(WORKLOADS["ridge+pipeline"], scaled, Ridge(alpha=1.0)),
                                  (WORKLOADS["light (mean)"], Pipeline([]), DummyRegressor())]:
        predictor = fit_predictor(frame, pipeline, model, target="progression", input_columns=inputs,
                                  forecasting=False, time_column=None)
        with mlflow.start_run() as run:
            pass
        log_champion(predictor, run_id=run.info.run_id, experiment_id=run.info.experiment_id,
                     registered_model=name, code_paths=[],
                     sample=frame[inputs].head(5), metadata={"model": type(model).__name__, "metric": "rmse",
                                                             "score": 0.0, "task": "regression",
                                                             "target": "progression", "params": {}})
    return store


def _wait(url: str, child: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.5)
    tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-20:])
    why = "timeout" if child.poll() is None else f"exited {child.returncode}"
    raise RuntimeError(f"{url} did not come up ({why}); the end of {log}:\n{tail}")


@contextlib.contextmanager
def _process(command: list[str], *, env: dict, health: str, log: Path):
    with open(log, "wb") as out:
        child = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=out, cwd=HERE,
                                 start_new_session=True)
    try:
        _wait(health, child, log)
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=90)
        except subprocess.TimeoutExpired:
            child.kill()


def raymlx_server(store: str, model: str, port: int, work: Path, *, direct: bool, replicas: int = 1):
    env = {"RAYMLX_HOME": str(work / "home")}
    if not direct:  # Serve's defaults: every request through Serve's proxy
        env.update(RAY_SERVE_THROUGHPUT_OPTIMIZED="0", RAY_SERVE_ENABLE_DIRECT_INGRESS="0")
    command = [sys.executable, "-m", "raymlx.cli", "serve", "--model", f"models:/{model}@champion",
               "--tracking-uri", store, "--set", f"serve.port={port}",
               "--set", f"serve.autoscaling.max_replicas={replicas}", "--set", "serve.autoscaling.min_replicas=1",
               "--set", "serve.autoscaling.target_ongoing_requests=2"]
    return _process(command, env=env, health=f"http://127.0.0.1:{port}/health", log=work / f"raymlx-{port}.log")


def uvicorn_server(store: str, model: str, port: int, work: Path):
    env = {"MODEL_URI": f"models:/{model}/1", "MLFLOW_TRACKING_URI": store}
    command = [sys.executable, "-m", "uvicorn", "plain_app:app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", "--no-access-log"]
    return _process(command, env=env, health=f"http://127.0.0.1:{port}/docs", log=work / "uvicorn.log")


def mlflow_server(store: str, model: str, port: int, work: Path):
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{model}/1", "--env-manager",
               "local", "-h", "127.0.0.1", "-p", str(port)]
    return _process(command, env={"MLFLOW_TRACKING_URI": store}, health=f"http://127.0.0.1:{port}/ping",
                    log=work / "mlflow.log")


def _row(frame: pd.DataFrame) -> dict:
    return frame.drop(columns=["progression"]).iloc[0].to_dict()


def tree_cpu_s(root: int) -> float:
    """CPU seconds used so far by process ``root`` and every process under it (Linux ``/proc``; ``nan`` elsewhere)."""
    try:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    children.setdefault(int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(
                        int(entry.name))
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            todo += children.get(pid, [])
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total
    except OSError:
        return float("nan")


def measure(workload: str, name: str, url: str, body: bytes, *, seconds: float, server: int) -> list[dict]:
    """Each concurrency after a 1 s warm-up: throughput, latency, batch size and the server's CPU a request
    (all its processes, Ray's included: less disturbed by a loaded machine than latency)."""
    rows = []
    for concurrency in (1, 16):
        run_load(url, body, concurrency=concurrency, seconds=1.0, warmup_s=0)
        before, client_before = tree_cpu_s(server), time.process_time()
        result: LoadResult = run_load(url, body, concurrency=concurrency, seconds=seconds, warmup_s=0)
        client_us = (time.process_time() - client_before) / max(result.requests, 1) * 1e6
        cpu_us = (tree_cpu_s(server) - before) / max(result.requests, 1) * 1e6
        ok = result.statuses.get(200, 0)
        rows.append({"workload": workload, "server": name, "concurrency": concurrency, "rps": ok / result.seconds,
                     "p50_ms": result.percentile(50), "p99_ms": result.percentile(99),
                     "non_200": result.requests - ok + result.errors, "batch": result.mean_batch_size,
                     "server_cpu_us": cpu_us, "client_cpu_us": client_us})
        print(f"  {workload}, {name} c={concurrency}: {rows[-1]['rps']:.0f} req/s, p50 {rows[-1]['p50_ms']:.1f} ms, "
              f"p99 {rows[-1]['p99_ms']:.1f} ms, non-200 {rows[-1]['non_200']}, server CPU {cpu_us:.0f} us a request, "
              f"client {client_us:.0f} us",
              file=sys.stderr, flush=True)
    return rows


def _running_replicas() -> int:
    from ray import serve

    app = serve.status().applications.get("raymlx")
    if app is None:
        return 0
    return sum(d.replica_states.get("RUNNING", 0) for d in app.deployments.values())


def autoscaling_step(store: str, port: int, work: Path, body: bytes) -> dict:
    """Time from a load step (0 -> 16 concurrent clients) until a second replica is running.

    Serve runs in this process's own Ray runtime (to watch its replicas); the load
    comes from another process, so that it does not share this one's interpreter.
    """
    from raymlx.serve._control import SERVE_ENV

    os.environ.update(SERVE_ENV)
    import ray

    from raymlx.serve._control import start_app, stop_app
    from raymlx.serve.deployment import serve_options
    from raymlx.serve.model import resolve_model
    from raymlx.spec import AutoscalingSpec, ServeSpec

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    spec = ServeSpec(port=port, autoscaling=AutoscalingSpec(min_replicas=1, max_replicas=2, target_ongoing_requests=2))
    model = WORKLOADS["ridge+pipeline"]
    running = start_app(resolve_model(f"models:/{model}@champion", tracking_uri=store), serve_options(spec),
                        host="127.0.0.1", port=port)
    try:
        (work / "body.json").write_bytes(body)
        before = _running_replicas()
        start = time.monotonic()
        load = subprocess.Popen([sys.executable, str(HERE / "loadgen.py"), f"{running.url}/predict",
                                 str(work / "body.json"), "-c", "16", "-s", "40"], stdout=subprocess.PIPE, text=True)
        added = None
        while load.poll() is None:
            if added is None and _running_replicas() > before:
                added = time.monotonic() - start
            time.sleep(0.25)
        r = json.loads(load.stdout.read())
        return {"replicas_before": before, "seconds_to_add_replica": added, "rps_during_step": r["rps"],
                "p99_ms_during_step": r["p99_ms"], "non_200": r["requests"] - r["statuses"].get("200", 0) + r["errors"]}
    finally:
        stop_app(running)
        ray.shutdown()


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    import mlflow
    import ray

    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}, "
            f"ray {ray.__version__}, mlflow {mlflow.__version__}")


def _batch(row: dict) -> str:
    """Requests per model call, averaged over requests (raymlx's ``x-raymlx-batch-size``), or ``-``."""
    batch = row.get("batch")
    return "-" if batch is None or batch != batch else f"{batch:.1f}"


def table(rows: list[dict]) -> str:
    uvicorn = {(r["workload"], r["concurrency"]): r["rps"] for r in rows if r["server"] == "FastAPI + uvicorn"}
    lines = ["| workload | server | clients | req/s | p50 ms | p99 ms | vs uvicorn | non-200 | batch | server CPU µs/req "
             "| client CPU µs/req |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        base = uvicorn.get((r["workload"], r["concurrency"]))
        ratio = f"{r['rps'] / base:.2f}x" if base else "-"
        lines.append(f"| {r['workload']} | {r['server']} | {r['concurrency']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {ratio} | {r['non_200']} | {_batch(r)} | {r['server_cpu_us']:.0f} | "
                     f"{r.get('client_cpu_us', float('nan')):.0f} |")
    return "\n".join(lines)


SERVERS = {  # key: (name, server, path)
    "raymlx": ("raymlx serve", lambda store, model, port, work: raymlx_server(store, model, port, work, direct=True),
               "/predict"),
    "raymlx-proxy": ("raymlx serve, Serve defaults (proxy)",
                     lambda store, model, port, work: raymlx_server(store, model, port, work, direct=False),
                     "/predict"),
    "uvicorn": ("FastAPI + uvicorn", uvicorn_server, "/predict"),
    "mlflow": ("mlflow models serve", mlflow_server, "/invocations"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="Measured seconds per server and concurrency.")
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS))
    parser.add_argument("--skip-autoscaling", action="store_true", help="Leave out the load-step measurement.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="raymlx-serve-bench-"))
    load_before = os.getloadavg()
    store = make_champions(work)
    row = _row(pd.read_csv(DATA))
    bodies = {"/predict": json.dumps({"records": [row]}).encode(),
              "/invocations": json.dumps({"dataframe_records": [row]}).encode()}
    rows = []
    for workload, model in WORKLOADS.items():
        if args.workload not in ("all", workload):
            continue
        for name, start, path in (SERVERS[key] for key in args.servers):
            print(f"{workload}: {name} ...", file=sys.stderr, flush=True)
            port = _free_port("127.0.0.1")
            with start(store, model, port, work) as child:
                rows += measure(workload, name, f"http://127.0.0.1:{port}{path}", bodies[path], seconds=args.seconds,
                                server=child.pid)
    step = None if args.skip_autoscaling else autoscaling_step(store, _free_port("127.0.0.1"), work, bodies["/predict"])
    print(f"machine: {machine()}; load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print(table(rows))
    if step:
        print(f"\nautoscaling (ridge+pipeline; max_replicas 2, target_ongoing_requests 2; load step 0 -> 16 clients): "
              f"second replica running {step['seconds_to_add_replica'] or float('nan'):.1f} s after the step; "
              f"{step['rps_during_step']:.0f} req/s and p99 {step['p99_ms_during_step']:.1f} ms over the 40 s step; "
              f"non-200: {step['non_200']}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows, "autoscaling": step}, indent=2))


if __name__ == "__main__":
    main()

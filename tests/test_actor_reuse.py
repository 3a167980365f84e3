"""Trials shorter than an actor's start still run two at a time: a starting actor is waited for, not killed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ray import tune

from raymlx import _compat


class _SlowToStart(tune.Trainable):
    """One step of a few milliseconds; every actor but the first takes a second and a half to start,
    as a worker's imports do on a busy machine."""

    def setup(self, config: dict) -> None:
        log = Path(config["log"])
        try:
            os.close(os.open(log.with_suffix(".first"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            time.sleep(1.5)
        with open(log, "a") as file:
            file.write(json.dumps({"started": os.getpid()}) + "\n")

    def step(self) -> dict:
        time.sleep(0.01)
        return {"score": 1.0, "done": True}

    def reset_config(self, new_config: dict) -> bool:
        return True

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        return None

    def load_checkpoint(self, checkpoint: object) -> None:
        return None


def _run(tmp_path: Path, name: str) -> tuple[list[int], list[int]]:
    """Pids of the trials and of the actors that finished starting."""
    log = tmp_path / f"{name}.jsonl"
    results = tune.Tuner(
        _SlowToStart,
        param_space={"log": str(log), "i": tune.grid_search(list(range(8)))},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=2),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path / "ray_results"), verbose=0),
    ).fit()
    started = [json.loads(line)["started"] for line in log.read_text().splitlines()]
    return [(results[i].metrics or {})["pid"] for i in range(len(results))], started


def test_a_starting_actor_is_not_killed_for_a_cached_one(ray_runtime, tmp_path):
    with _compat.keep_starting_actors():
        pids, started = _run(tmp_path, "kept")
    assert len(pids) == 8
    assert len(set(pids)) == 2  # the second actor ran a trial: both CPUs worked
    assert len(started) == 2  # no actor started again after one was killed

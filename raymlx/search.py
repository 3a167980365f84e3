"""Search spaces and algorithms: one Optuna-backed search per model, multiplexed into one Tune run.

All models of an experiment share one Tune run whose searcher hands out trials
from each model's own search in turn. That keeps every search concurrent, lets
Tune reuse worker processes across models (a new worker costs about 2 s) and
keeps the budget of each model exact.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from raymlx._result import DRIVER_TRIAL_KEY, failure_of
from raymlx.space import decode, distributions, grid_points
from raymlx.spec import SearchSpec

__all__ = ["model_searcher", "ModelSearcher"]


def _sampler(search: SearchSpec) -> optuna.samplers.BaseSampler:
    if search.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    if search.algorithm == "grid":
        return optuna.samplers.GridSampler(grid_points(search.space), seed=search.seed)
    return optuna.samplers.TPESampler(seed=search.seed)


def model_searcher(search: SearchSpec, *, metric: str, mode: str) -> tuple[Searcher | None, int]:
    """The searcher of one model and its trial budget (a grid runs each point once at most)."""
    budget = search.num_samples
    if search.algorithm == "grid":
        grid = grid_points(search.space)
        budget = min(budget, int(np.prod([len(v) for v in grid.values()])))
        space: dict[str, optuna.distributions.BaseDistribution] = {
            k: optuna.distributions.CategoricalDistribution(v) for k, v in grid.items()}
    else:
        space = distributions(search.space)
    if not space:
        return None, 1  # nothing to search: one trial scores the fixed parameters
    return _Decoding(search.space, space=space, metric=metric, mode=mode, sampler=_sampler(search)), budget


class _Decoding(OptunaSearch):
    """OptunaSearch that hands out the spec's own values for choices Optuna holds by position."""

    def __init__(self, spec_space: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self._spec_space = spec_space

    def suggest(self, trial_id: str):
        params = super().suggest(trial_id)
        return decode(self._spec_space, params) if isinstance(params, dict) else params


class ModelSearcher(Searcher):
    """Hands out trials from each model's own search, keeping every model's share of the run even.

    Among models equally far through their budgets, the one whose trials have
    taken longest goes first, so short trials fill the end of the run instead of
    one long trial running alone there. A trial's config is
    ``{"model": name, "params": {...}}``. A configuration evaluated outside Tune, by the driver
    (:meth:`suggest_new`, then :meth:`evaluated`, from another thread), is handed to Tune's next
    trial before any new one; while one is being evaluated, the run is not finished.
    """

    def __init__(self, searches: dict[str, tuple[Searcher | None, int]], *, metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self._searches = dict(searches)
        self._budgets = {name: budget for name, (_, budget) in searches.items()}
        self._suggested = dict.fromkeys(searches, 0)
        self._seconds: dict[str, list[float]] = {name: [] for name in searches}
        self._owner: dict[str, str] = {}
        self._evaluated: list[dict] = []  # configurations evaluated outside Tune, for Tune's next trials
        self._replayed: set[str] = set()  # Tune's trials given one of those: their search knows the result
        self._pending: dict[str, dict] = {}  # configurations being evaluated outside Tune, by trial id
        self._lock = threading.RLock()  # the driver's evaluations ask from a thread of their own

    def __getstate__(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state, _lock=threading.RLock())

    @property
    def total_trials(self) -> int:
        return sum(self._budgets.values())

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # each model's search was configured when it was made

    def suggest(self, trial_id: str) -> dict | str | None:  # type: ignore[override]  # Searcher.FINISHED is a str
        with self._lock:
            if self._evaluated:
                replay = self._evaluated.pop(0)
                self._owner[trial_id] = replay["model"]
                self._replayed.add(trial_id)
                return replay
            config = self._new(trial_id)
            return None if config == Searcher.FINISHED and self._pending else config

    def suggest_new(self, trial_id: str) -> dict | str | None:
        """A configuration to evaluate outside Tune, then hand to :meth:`evaluated`: ``None`` or
        ``Searcher.FINISHED`` as :meth:`suggest` answers."""
        with self._lock:
            config = self._new(trial_id)
            if isinstance(config, dict):
                self._pending[trial_id] = config
            return config

    def _new(self, trial_id: str) -> dict | str | None:
        open_models = [n for n in self._searches if self._suggested[n] < self._budgets[n]]
        if not open_models:
            return Searcher.FINISHED
        for name in sorted(open_models, key=self._turn):
            searcher, _ = self._searches[name]
            params = searcher.suggest(trial_id) if searcher is not None else {}
            if params == Searcher.FINISHED:
                self._budgets[name] = self._suggested[name]
                continue
            if params is None:
                continue  # that search waits for results before suggesting more
            self._suggested[name] += 1
            self._owner[trial_id] = name
            return {"model": name, "params": params}
        return None

    def _turn(self, name: str) -> tuple[float, float]:
        """Least share of budget used first; among equals, longest trials first."""
        seconds = self._seconds[name]
        return self._suggested[name] / self._budgets[name], -(sum(seconds) / len(seconds) if seconds else 0.0)

    def evaluated(self, trial_id: str, config: dict, result: dict, *, seconds: float, marker: dict) -> None:
        """Tell the model's search the result of a configuration :meth:`suggest` gave ``trial_id`` that was
        evaluated outside Tune, and hand it with ``marker`` (under ``DRIVER_TRIAL_KEY``) to Tune's next trial,
        whose result is then that evaluation's (the search is not told twice)."""
        with self._lock:
            self._seconds[config["model"]].append(seconds)
            self.on_trial_complete(trial_id, result)
            self._evaluated.append({**config, DRIVER_TRIAL_KEY: marker})
            self._pending.pop(trial_id, None)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        searcher = self._searcher_of(trial_id)
        if searcher is not None and failure_of(result) is None and trial_id not in self._replayed:
            with self._lock:
                searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._replayed:
            return
        with self._lock:
            self._complete(trial_id, result, error)

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        searcher = self._searcher_of(trial_id)
        if result and "time_this_iter_s" in result and trial_id in self._owner:
            self._seconds[self._owner[trial_id]].append(float(result["time_this_iter_s"]))
        if searcher is not None and failure_of(result) is not None:
            searcher.on_trial_complete(trial_id, result=None, error=True)
        elif searcher is not None:
            searcher.on_trial_complete(trial_id, result=result, error=error)

    def get_state(self) -> dict:
        """Every model's search (its sampler's random state included) and what was handed out: a search
        restored from it suggests what the uninterrupted one would have."""
        return {key: getattr(self, key) for key in ("_searches", "_budgets", "_suggested", "_seconds", "_owner",
                                                   "_evaluated", "_replayed", "_pending")}

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`'s; configurations the driver was still evaluating go to Tune's next trials."""
        vars(self).update(state)
        self._pending = dict(self._pending)
        for trial_id in list(self._pending):
            self.release(trial_id)

    def release(self, trial_id: str) -> None:
        """Hand a configuration :meth:`suggest_new` gave out, but whose evaluation never ended, to Tune's next trial."""
        with self._lock:
            config = self._pending.pop(trial_id, None)
            if config is not None:
                self._evaluated.append(config)

    def save(self, checkpoint_path: str) -> None:
        """Tune saves the searcher with its experiment state (``raymlx tune --resume`` restores it)."""
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.get_state(), file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.set_state(pickle.load(file))

    def _searcher_of(self, trial_id: str) -> Searcher | None:
        name = self._owner.get(trial_id)
        return self._searches[name][0] if name is not None else None



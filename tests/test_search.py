"""Search spaces as Optuna distributions, per-model searchers, and the searcher that interleaves them."""

from __future__ import annotations

import itertools

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from raymlx._result import DRIVER_TRIAL_KEY
from raymlx.search import ModelSearcher, model_searcher
from raymlx.space import distributions, grid_points
from raymlx.spec import SearchSpec

METRIC = "rmse"


def space(**params) -> dict:
    """A validated search space: ``space(alpha={"type": "float", ...})``."""
    return SearchSpec(space=params).space


# ---- distributions and grids -----------------------------------------------------------------------

@pytest.mark.parametrize(("param", "expected"), [
    pytest.param({"type": "float", "low": 0.1, "high": 2.5}, FloatDistribution(0.1, 2.5), id="float"),
    pytest.param({"type": "float", "low": 1e-4, "high": 1.0, "log": True},
                 FloatDistribution(1e-4, 1.0, log=True), id="float-log"),
    pytest.param({"type": "float", "low": 0.0, "high": 1.0, "step": 0.25},
                 FloatDistribution(0.0, 1.0, step=0.25), id="float-step"),
    pytest.param({"type": "int", "low": 2, "high": 12}, IntDistribution(2, 12), id="int"),
    pytest.param({"type": "int", "low": 1, "high": 1024, "log": True}, IntDistribution(1, 1024, log=True),
                 id="int-log"),
    pytest.param({"type": "int", "low": 0, "high": 100, "step": 10}, IntDistribution(0, 100, step=10), id="int-step"),
    pytest.param({"type": "choice", "values": ["gini", "entropy", None]},
                 CategoricalDistribution(["gini", "entropy", None]), id="choice"),
])
def test_distributions(param, expected):
    assert distributions(space(p=param)) == {"p": expected}


def test_distributions_keep_every_parameter():
    result = distributions(space(a={"type": "int", "low": 1, "high": 3}, b={"type": "choice", "values": [1]}))
    assert list(result) == ["a", "b"]


@pytest.mark.parametrize(("param", "expected"), [
    pytest.param({"type": "int", "low": 1, "high": 4}, [1, 2, 3, 4], id="int"),
    pytest.param({"type": "int", "low": 0, "high": 10, "step": 3}, [0, 3, 6, 9], id="int-step"),
    pytest.param({"type": "int", "low": 0, "high": 5, "step": 3}, [0, 3], id="int-step-not-reaching-high"),
    pytest.param({"type": "float", "low": 0.0, "high": 0.3, "step": 0.1}, [0.0, 0.1, 0.2, 0.3], id="float-step"),
    pytest.param({"type": "float", "low": 0.0, "high": 1.0, "step": 0.6}, [0.0, 0.6],
                 id="float-step-not-reaching-high"),
    pytest.param({"type": "choice", "values": ["a", 2, None]}, ["a", 2, None], id="choice"),
])
def test_grid_points(param, expected):
    assert grid_points(space(p=param)) == {"p": expected}


def test_grid_points_of_int_parameters_are_ints():
    (values,) = grid_points(space(p={"type": "int", "low": 1, "high": 3})).values()
    assert [type(v) for v in values] == [int, int, int]


# ---- one model's searcher ----------------------------------------------------------------------------

GRID = {"a": {"type": "choice", "values": [1, 2]}, "b": {"type": "int", "low": 0, "high": 2}}  # 6 points
FLOAT = {"alpha": {"type": "float", "low": 0.0, "high": 1.0}}


@pytest.mark.parametrize(("algorithm", "num_samples", "params", "budget"), [
    pytest.param("grid", 10, GRID, 6, id="grid-capped-at-its-size"),
    pytest.param("grid", 4, GRID, 4, id="grid-smaller-budget"),
    pytest.param("random", 7, FLOAT, 7, id="random"),
    pytest.param("optuna", 3, FLOAT, 3, id="optuna"),
])
def test_model_searcher_budget(algorithm, num_samples, params, budget):
    searcher, got = model_searcher(SearchSpec(algorithm=algorithm, num_samples=num_samples, space=params),
                                   metric=METRIC, mode="min")
    assert isinstance(searcher, OptunaSearch)
    assert got == budget


@pytest.mark.parametrize("algorithm", ["grid", "random", "optuna"])
def test_empty_space_runs_one_trial_without_a_searcher(algorithm):
    assert model_searcher(SearchSpec(algorithm=algorithm, num_samples=5), metric=METRIC, mode="min") == (None, 1)


@pytest.mark.parametrize(("algorithm", "sampler"), [
    pytest.param("grid", optuna.samplers.GridSampler, id="grid"),
    pytest.param("random", optuna.samplers.RandomSampler, id="random"),
    pytest.param("optuna", optuna.samplers.TPESampler, id="optuna"),
])
def test_model_searcher_sampler(algorithm, sampler):
    searcher, _ = model_searcher(SearchSpec(algorithm=algorithm, space=GRID), metric=METRIC, mode="min")
    searcher.suggest("t0")
    assert type(searcher._ot_study.sampler) is sampler  # the study OptunaSearch made


def test_grid_searcher_hands_out_every_point_once():
    searcher, budget = model_searcher(SearchSpec(algorithm="grid", num_samples=100, space=GRID),
                                      metric=METRIC, mode="min")
    points = [tuple(sorted(searcher.suggest(f"t{i}").items())) for i in range(budget)]
    assert sorted(points) == sorted(itertools.product([("a", 1), ("a", 2)], [("b", 0), ("b", 1), ("b", 2)]))


@pytest.mark.parametrize("algorithm", ["random", "optuna"])
def test_model_searcher_seed(algorithm):
    def first(seed):
        searcher, _ = model_searcher(SearchSpec(algorithm=algorithm, seed=seed, space=FLOAT), metric=METRIC, mode="min")
        return [searcher.suggest(f"t{i}")["alpha"] for i in range(3)]
    assert first(3) == first(3)
    assert first(3) != first(4)


# ---- the searcher of the whole run -----------------------------------------------------------------

class Scripted(Searcher):
    """Answers ``suggest`` from a script and records what it is told."""

    def __init__(self, answers: list) -> None:
        super().__init__(metric=METRIC, mode="min")
        self.answers = list(answers)
        self.asked: list[str] = []
        self.results: list[tuple[str, dict]] = []
        self.completed: list[tuple[str, dict | None, bool]] = []

    def suggest(self, trial_id: str):
        self.asked.append(trial_id)
        return self.answers.pop(0) if self.answers else Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.results.append((trial_id, result))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.completed.append((trial_id, result, error))


def real_searches() -> dict:
    return {
        "forest": model_searcher(SearchSpec(algorithm="random", num_samples=3, space=GRID), metric=METRIC, mode="min"),
        "ridge": model_searcher(SearchSpec(algorithm="optuna", num_samples=7, space=FLOAT), metric=METRIC, mode="min"),
        "grid": model_searcher(SearchSpec(algorithm="grid", num_samples=50, space=GRID), metric=METRIC, mode="min"),
        "fixed": model_searcher(SearchSpec(num_samples=4), metric=METRIC, mode="min"),
    }


def drain(searcher: ModelSearcher, limit: int = 100) -> list[dict]:
    configs = []
    for i in range(limit):
        config = searcher.suggest(f"trial{i}")
        if config == Searcher.FINISHED:
            return configs
        configs.append(config)
    raise AssertionError(f"no FINISHED after {limit} suggestions")


def test_each_model_gets_exactly_its_budget_then_finished():
    searcher = ModelSearcher(real_searches(), metric=METRIC, mode="min")
    assert searcher.total_trials == 3 + 7 + 6 + 1
    configs = drain(searcher)
    counts = {name: sum(c["model"] == name for c in configs) for name in ["forest", "ridge", "grid", "fixed"]}
    assert counts == {"forest": 3, "ridge": 7, "grid": 6, "fixed": 1}
    assert searcher.suggest("one-more") == Searcher.FINISHED


def test_configs_name_the_model_and_its_params():
    configs = drain(ModelSearcher(real_searches(), metric=METRIC, mode="min"))
    keys = {"forest": {"a", "b"}, "ridge": {"alpha"}, "grid": {"a", "b"}, "fixed": set()}
    for config in configs:
        assert set(config) == {"model", "params"}
        assert set(config["params"]) == keys[config["model"]]
    assert [c["params"] for c in configs if c["model"] == "fixed"] == [{}]


def test_models_are_interleaved_in_proportion_to_their_budgets():
    budgets = {"small": 2, "medium": 5, "large": 11}
    searches = {name: (Scripted([{"i": i} for i in range(b)]), b) for name, b in budgets.items()}
    searcher = ModelSearcher(searches, metric=METRIC, mode="min")
    given = dict.fromkeys(budgets, 0)
    order = []
    for k in range(sum(budgets.values())):
        config = searcher.suggest(f"t{k}")
        given[config["model"]] += 1
        order.append(config["model"])
        for a, b in itertools.permutations(budgets, 2):
            # no model more than one of its own trials ahead of another's share
            assert given[a] / budgets[a] - given[b] / budgets[b] <= 1 / budgets[a] + 1e-12, (k, given)
    assert set(order[:3]) == set(budgets)  # every model starts in the first round
    assert searcher.suggest("last") == Searcher.FINISHED


def test_completed_trials_reach_the_owning_optuna_study():
    searches = real_searches()
    searcher = ModelSearcher(searches, metric=METRIC, mode="min")
    values: dict[str, list[float]] = {name: [] for name in searches}
    for i, config in enumerate(drain(searcher)):
        value = float(i) + 0.5
        searcher.on_trial_complete(f"trial{i}", result={METRIC: value, **config})
        values[config["model"]].append(value)
    for name in ["forest", "ridge", "grid"]:
        study = searches[name][0]._ot_study  # the Optuna study behind that model's OptunaSearch
        assert [t.value for t in study.trials] == values[name]
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_results_and_completions_are_routed_to_the_owner_only():
    first, second = Scripted([{"x": 1}, {"x": 2}]), Scripted([{"y": 1}, {"y": 2}])
    searcher = ModelSearcher({"first": (first, 2), "second": (second, 2)}, metric=METRIC, mode="min")
    owners = {f"t{i}": searcher.suggest(f"t{i}")["model"] for i in range(4)}
    for trial_id, owner in owners.items():
        searcher.on_trial_result(trial_id, {METRIC: 1.0, "owner": owner})
        searcher.on_trial_complete(trial_id, result={METRIC: 2.0, "owner": owner}, error=trial_id == "t3")
    for name, scripted in [("first", first), ("second", second)]:
        mine = [t for t, o in owners.items() if o == name]
        assert [t for t, _ in scripted.results] == mine
        assert [t for t, _, _ in scripted.completed] == mine
        assert all(r["owner"] == name for _, r in scripted.results)
        assert [e for t, _, e in scripted.completed] == [t == "t3" for t in mine]


def test_unknown_trials_and_fixed_models_are_ignored_on_completion():
    scripted = Scripted([{"x": 1}])
    searcher = ModelSearcher({"fixed": (None, 1), "scripted": (scripted, 1)}, metric=METRIC, mode="min")
    trial_ids = [f"t{i}" for i in range(2)]
    for trial_id in trial_ids:
        searcher.suggest(trial_id)
    for trial_id in [*trial_ids, "never-suggested"]:
        searcher.on_trial_result(trial_id, {METRIC: 1.0})
        searcher.on_trial_complete(trial_id, result={METRIC: 1.0})
    assert len(scripted.completed) == 1 and len(scripted.results) == 1


def test_a_waiting_search_lets_another_model_go_first():
    waiting, ready = Scripted([None, {"x": 1}]), Scripted([{"y": 1}])
    searcher = ModelSearcher({"waiting": (waiting, 1), "ready": (ready, 1)}, metric=METRIC, mode="min")
    assert searcher.suggest("t0") == {"model": "ready", "params": {"y": 1}}
    assert searcher.suggest("t1") == {"model": "waiting", "params": {"x": 1}}
    assert searcher.suggest("t2") == Searcher.FINISHED


def test_every_search_waiting_means_none():
    searcher = ModelSearcher({"a": (Scripted([None]), 2), "b": (Scripted([None]), 2)}, metric=METRIC, mode="min")
    assert searcher.suggest("t0") is None
    assert searcher.total_trials == 4  # waiting does not spend budget


def test_a_search_that_finishes_early_shrinks_its_budget():
    short, other = Scripted([{"x": 1}]), Scripted([{"y": i} for i in range(3)])
    searcher = ModelSearcher({"short": (short, 5), "other": (other, 3)}, metric=METRIC, mode="min")
    configs = drain(searcher)
    assert [c["model"] for c in configs].count("short") == 1
    assert [c["model"] for c in configs].count("other") == 3
    assert searcher.total_trials == 4


def test_choices_of_lists_are_searched_by_position_and_handed_out_as_written():
    from raymlx.space import decode
    from raymlx.spec import SearchSpec

    search = SearchSpec.model_validate({"num_samples": 3, "space": {
        "hidden_layer_sizes": {"type": "choice", "values": [[32], [64, 32]]}, "alpha": {"type": "choice", "values": [1, 2]}}})
    assert distributions(search.space)["hidden_layer_sizes"].choices == (0, 1)
    assert decode(search.space, {"hidden_layer_sizes": 1, "alpha": 2}) == {"hidden_layer_sizes": [64, 32], "alpha": 2}
    searcher = ModelSearcher({"mlp": model_searcher(search, metric="rmse", mode="min")}, metric="rmse", mode="min")
    seen = [searcher.suggest(f"t{i}")["params"]["hidden_layer_sizes"] for i in range(3)]
    assert all(value in ([32], [64, 32]) for value in seen)


def test_among_models_equally_through_their_budgets_the_slowest_goes_first():
    from raymlx.spec import SearchSpec

    search = SearchSpec.model_validate({"num_samples": 2, "space": {"a": {"type": "float", "low": 0.0, "high": 1.0}}})
    names = ["quick", "slow", "medium"]
    searcher = ModelSearcher({n: model_searcher(search, metric="rmse", mode="min") for n in names},
                             metric="rmse", mode="min")
    first = [searcher.suggest(f"t{i}") for i in range(3)]
    assert [c["model"] for c in first] == names  # nothing measured yet: spec order
    for i, seconds in enumerate([0.1, 5.0, 1.0]):
        searcher.on_trial_complete(f"t{i}", {"rmse": 1.0, "time_this_iter_s": seconds})
    assert [searcher.suggest(f"u{i}")["model"] for i in range(3)] == ["slow", "medium", "quick"]


def test_a_configuration_evaluated_outside_tune_goes_to_tunes_next_trial_and_its_search_is_told_once():
    first, second = Scripted([{"x": 1}, {"x": 2}]), Scripted([{"y": 1}])
    searcher = ModelSearcher({"first": (first, 2), "second": (second, 1)}, metric=METRIC, mode="min")
    config = searcher.suggest_new("driver_0")
    assert config == {"model": "first", "params": {"x": 1}}
    searcher.evaluated("driver_0", config, {METRIC: 3.0}, seconds=2.0, marker={"index": 0})
    assert first.completed == [("driver_0", {METRIC: 3.0}, False)]  # told at once
    restored = ModelSearcher({"first": (first, 2), "second": (second, 1)}, metric=METRIC, mode="min")
    restored.set_state(searcher.get_state())  # Tune saves the searcher with its state: the queue too
    given = [restored.suggest(f"t{i}") for i in range(4)]
    assert given[0] == {**config, DRIVER_TRIAL_KEY: {"index": 0}}  # before any new configuration
    assert [c["model"] for c in given[1:3]] == ["second", "first"] and given[3] == Searcher.FINISHED
    for i in range(3):
        restored.on_trial_result(f"t{i}", {METRIC: 1.0})
        restored.on_trial_complete(f"t{i}", result={METRIC: 1.0})
    assert [t for t, _, _ in first.completed] == ["driver_0", "t2"]  # the replay is not told again
    assert [t for t, _ in first.results] == ["t2"]


def test_while_the_driver_evaluates_the_last_configuration_the_run_waits_and_a_released_one_goes_to_tune():
    searcher = ModelSearcher({"only": (Scripted([{"x": 1}]), 1)}, metric=METRIC, mode="min")
    config = searcher.suggest_new("driver_0")
    assert searcher.suggest("t0") is None  # not FINISHED: that evaluation's trial is still to come
    searcher.release("driver_0")  # its evaluation raised beyond a failed fit
    assert searcher.suggest("t1") == config and searcher.suggest("t2") == Searcher.FINISHED

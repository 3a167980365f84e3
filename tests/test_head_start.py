"""The head start: the trial the driver evaluates while Ray starts is a real trial, logged and counted once, and the
search goes on from it as if Tune had run it."""

from __future__ import annotations

import textwrap

from raymlx.checks import validate
from raymlx.experiment import run_experiment
from raymlx.head_start import head_start
from raymlx.spec_io import load_spec
from raymlx.tracking import MODEL_TAG, SESSION_TAG
from raymlx.trial_runs import EVALUATED_ON_TAG
from tests.test_tune import SAME_EITHER_WAY, _logged, _runs

SMALLER = ["models.ridge.search.num_samples=3", "models.tree.search.num_samples=3"]


def _tuned(project, experiment: str, *, trials_on_driver: bool):
    loaded = load_spec(project / "specs.yaml", overrides=[*SMALLER, f"tracking.experiment={experiment}"])
    frame = validate(loaded)
    head = head_start(loaded, frame, trials_on_driver=trials_on_driver)
    return head, run_experiment(loaded, frame, head=head)


def test_trials_evaluated_on_the_driver_are_child_runs_counted_once(ray_runtime, project):
    (project / "specs.yaml").write_text(textwrap.dedent(SAME_EITHER_WAY))
    head, first = _tuned(project, "driver-first", trials_on_driver=True)
    untouched, tuned = _tuned(project, "tune-only", trials_on_driver=False)
    assert untouched.driver.results == {}
    evaluated = list(head.driver.results.values())
    assert len(evaluated) == 1
    # The same configurations with the same scores, each one run: the driver's trials are not run again.
    assert len(_logged(first)) == 6 and _logged(first) == _logged(tuned)
    assert [(r.model, r.score, r.params, r.trials) for r in first.leaderboard] == [
        (r.model, r.score, r.params, r.trials) for r in tuned.leaderboard]
    assert first.champion == tuned.champion
    runs = _runs(first, "trial")
    driver = sorted((r for r in runs if r.data.tags.get(EVALUATED_ON_TAG) == "driver"), key=lambda r: r.info.start_time)
    assert [r.data.tags[MODEL_TAG] for r in driver] == ["ridge"]  # the first model's first configuration
    later = [r for r in runs if r not in driver]
    assert driver[0].info.start_time < min(r.info.start_time for r in later)  # the first trial, before Tune's
    for run, result in zip(driver, evaluated, strict=True):
        assert run.info.status == "FINISHED" and run.data.tags[SESSION_TAG] == first.session_run_id
        assert run.data.metrics["fit_time_s"] == result["fit_time_s"]  # the driver's evaluation, not a second one
        assert run.data.metrics["rmse"] == result["rmse"]
        assert 0 <= result["fit_time_s"] * 1000 <= run.info.end_time - run.info.start_time + 1

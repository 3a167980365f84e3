"""A model's section starts as soon as its own trials have ended, while other models still tune."""

from __future__ import annotations

from collections import defaultdict

from mlflow.tracking import MlflowClient

from raymlx.tracking import MODEL_TAG, ROLE_TAG, SESSION_TAG


def _trial_ends(session) -> dict[str, list[float]]:
    client = MlflowClient(session.result.tracking_uri)
    query = f"tags.`{ROLE_TAG}` = 'trial' and tags.`{SESSION_TAG}` = '{session.result.session_run_id}'"
    ends = defaultdict(list)
    for run in client.search_runs([session.result.experiment_id], query):
        ends[run.data.tags[MODEL_TAG]].append(run.info.end_time / 1000)
    return ends


def test_a_section_starts_when_its_models_trials_end_while_others_tune(forecasting):
    """Prophet's trials take seconds: the other models end before it, and their sections start then."""
    ends = _trial_ends(forecasting)
    assert set(forecasting.submitted) == set(ends)  # every model's section was drawn
    last = max(max(times) for times in ends.values())
    early = [name for name, at in forecasting.submitted.items() if at < last]
    assert early, f"every section started after the last trial ended ({forecasting.submitted}, last {last})"
    for name in early:  # not before its own trials have all ended (and their runs were written)
        assert max(ends[name]) <= forecasting.submitted[name]

"""The report's processes draw without MLflow or Ray: the driver reads each model's trials and logs what is drawn."""

from __future__ import annotations

import dataclasses

from mlflow.tracking import MlflowClient

from raymlx.report._section import OOF_FILE
from raymlx.report.collect import Drawn
from raymlx.report.jobs import late_jobs, log_drawn
from raymlx.report.live import _pool
from raymlx.report._store import read_section
from tests.report.in_report_process import draw_and_list_heavy_imports


def test_a_report_process_draws_a_section_without_importing_mlflow_or_ray_and_the_driver_logs_it(regression):
    result = regression.result
    row = next(r for r in result.leaderboard if r.model == "ridge")
    job = late_jobs(regression.loaded, regression.frame, result, [row])[0]
    assert len(job.trials) == 3 and all(t.finished and t.score == t.score for t in job.trials)
    pool, tuned = _pool()
    tuned.set()
    try:
        drawn, heavy = pool.submit(draw_and_list_heavy_imports, job).result(timeout=300)
    finally:
        pool.shutdown()
    assert heavy == []
    titles = [chart.title for chart in drawn.section.charts]
    assert "Optimization history" in titles and "Predicted vs actual" in titles
    client = MlflowClient(result.tracking_uri)  # logged to a run of its own: the session's stays as it was
    run_id = client.create_run(client.get_run(job.run_id).info.experiment_id).info.run_id
    logged = log_drawn(result.tracking_uri, Drawn(dataclasses.replace(drawn.section, run_id=run_id), drawn.frames))
    stored = read_section(client, "ridge", run_id)
    assert stored is not None and [c.path for c in stored.charts] == [c.path for c in logged.charts]
    assert [c.png for c in stored.charts] == [c.png for c in drawn.section.charts]
    assert {f.path for f in client.list_artifacts(run_id, "oof")} == {OOF_FILE}

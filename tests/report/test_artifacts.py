"""Each chart kind lands on the right MLflow run for each task, drawn from the rows the leaderboard scored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from raymlx.report._section import OOF_FILE
from raymlx.tracking import MODEL_TAG, ROLE_TAG

SEARCH = {"plots/search/optimization_history.png", "plots/search/slice.png"}
REGRESSION = {f"plots/diagnostics/{n}.png" for n in ("predicted_vs_actual", "residuals_vs_predicted",
                                                      "residual_distribution")}
CLASSIFICATION = {f"plots/diagnostics/{n}.png" for n in ("confusion_matrix", "roc", "precision_recall", "calibration")}
FORECASTING = REGRESSION | {f"plots/diagnostics/{n}.png" for n in ("forecast_by_fold", "error_by_step",
                                                                    "residuals_over_time")}
SHAP = {"plots/explanations/shap_beeswarm.png", "plots/explanations/shap_importance.png"}

EXPECTED = {
    "regression": {"ridge": REGRESSION | SHAP | SEARCH, "forest": REGRESSION | SHAP | SEARCH,
                   "knn": REGRESSION | SHAP | SEARCH},
    "classification": {"logreg": CLASSIFICATION | SHAP | SEARCH, "tree": CLASSIFICATION | SHAP | SEARCH},
    "forecasting": {"ridge": FORECASTING | SHAP | SEARCH,
                    "prophet": FORECASTING | SEARCH | {"plots/explanations/prophet_components.png"},
                    "exponential_smoothing": FORECASTING | {"plots/explanations/fitted_components.png"},
                    "seasonal_naive": FORECASTING | {"plots/explanations/season_repeated.png"}},
}


def _files(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _files(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def _runs(session, role: str) -> dict:
    client = MlflowClient(session.result.tracking_uri)
    runs = client.search_runs([session.result.experiment_id],
                              f"tags.`{ROLE_TAG}` = '{role}' and tags.`raymlx.session` = '{session.result.session_run_id}'")
    return {r.data.tags[MODEL_TAG]: r for r in runs}


@pytest.mark.parametrize("task", ["regression", "classification", "forecasting"])
def test_each_chart_kind_is_a_png_on_its_model_run(task, request):
    session = request.getfixturevalue(task)
    client = MlflowClient(session.result.tracking_uri)
    runs = _runs(session, "model")
    assert set(runs) == set(EXPECTED[task])
    for model, wanted in EXPECTED[task].items():
        files = _files(client, runs[model].info.run_id)
        assert wanted <= files, f"{model} lacks {sorted(wanted - files)}"
        assert OOF_FILE in files and "report/section.json" in files
        beeswarm = wanted & SHAP
        for path in beeswarm:
            local = client.download_artifacts(runs[model].info.run_id, path)
            assert open(local, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("task", ["regression", "forecasting"])
def test_the_session_run_holds_the_overview_and_the_html(task, request):
    session = request.getfixturevalue(task)
    client = MlflowClient(session.result.tracking_uri)
    files = _files(client, session.result.session_run_id)
    overview = {"plots/leaderboard.png"} | ({"plots/fold_plan.png"} if task == "forecasting" else set())
    assert overview | {"report.html", "report/summary.json"} <= files
    assert (task == "forecasting") == ("plots/fold_plan.png" in files)
    assert session.html.is_file() and session.html.parent == session.loaded.path.parent


@pytest.mark.parametrize("task", ["regression", "forecasting"])
def test_out_of_fold_predictions_are_the_ones_the_best_trial_scored(task, request):
    """Each fold's RMSE recomputed from the logged predictions equals the best trial's: same rows, same order."""
    session = request.getfixturevalue(task)
    client = MlflowClient(session.result.tracking_uri)
    metric = session.loaded.spec.metric_spec.name
    for row in session.result.leaderboard:
        oof = pd.read_parquet(client.download_artifacts(_runs(session, "model")[row.model].info.run_id, OOF_FILE))
        rmse = [float(np.sqrt(np.mean((f["y_true"] - f["y_pred"]) ** 2))) for _, f in oof.groupby("fold")]
        assert metric == "rmse"
        np.testing.assert_allclose(rmse, row.fold_scores, rtol=1e-9)
        truth = session.frame[session.loaded.spec.data.target]
        labels = oof["time"] if task == "forecasting" else oof["row"]
        np.testing.assert_array_equal(truth.loc[labels].to_numpy(), oof["y_true"].to_numpy())


def test_classification_predictions_carry_each_class_probability(classification):
    client = MlflowClient(classification.result.tracking_uri)
    oof = pd.read_parquet(client.download_artifacts(_runs(classification, "model")["logreg"].info.run_id, OOF_FILE))
    proba = oof[[c for c in oof.columns if c.startswith("proba:")]]
    assert sorted(c.partition(":")[2] for c in proba.columns) == ["setosa", "versicolor", "virginica"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    accuracy = [float((f["y_true"] == f["y_pred"]).mean()) for _, f in oof.groupby("fold")]
    best = next(r for r in classification.result.leaderboard if r.model == "logreg")
    np.testing.assert_allclose(accuracy, best.fold_scores)


def test_univariate_models_say_what_they_cannot_show(forecasting):
    client = MlflowClient(forecasting.result.tracking_uri)
    import json

    section = json.load(open(client.download_artifacts(_runs(forecasting, "model")["seasonal_naive"].info.run_id,
                                                        "report/section.json")))
    assert any("sees only the target's own past" in note for note in section["notes"])

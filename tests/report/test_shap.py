"""SHAP values of a linear model are its coefficients times each feature's distance from the training mean."""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from sklearn.linear_model import Ridge

from raymlx.folds import make_folds
from raymlx.report._section import SHAP_FILE
from raymlx.report.explain import BASE_COLUMN, SHAP_PREFIX, VALUE_PREFIX
from raymlx.tracking import MODEL_TAG, ROLE_TAG
from raymlx.experiment import compute_fold_features


def test_linear_shap_values_agree_with_the_coefficients(regression):
    spec, result = regression.loaded.spec, regression.result
    client = MlflowClient(result.tracking_uri)
    run = client.search_runs([result.experiment_id], f"tags.`{ROLE_TAG}` = 'model' and tags.`{MODEL_TAG}` = 'ridge' "
                             f"and tags.`raymlx.session` = '{result.session_run_id}'")[0]
    logged = pd.read_parquet(client.download_artifacts(run.info.run_id, SHAP_FILE))
    best = next(r for r in result.leaderboard if r.model == "ridge")
    folds = make_folds(regression.frame, spec)
    last = compute_fold_features(spec, regression.frame, folds, base_dir=regression.loaded.base_dir)["scaled"][-1]
    model = Ridge(**best.params).fit(last.X_train, last.y_train)
    features = list(last.X_train.columns)
    x = pd.concat([last.X_train, last.X_valid]).loc[logged.index, features]
    # The explained rows are the fold's feature rows, column for column.
    np.testing.assert_allclose(logged[[VALUE_PREFIX + f for f in features]].to_numpy(), x.to_numpy())
    expected = model.coef_ * (x.to_numpy() - last.X_train.mean().to_numpy())
    np.testing.assert_allclose(logged[[SHAP_PREFIX + f for f in features]].to_numpy(), expected, rtol=1e-6, atol=1e-8)
    # Additive: the base value plus a row's SHAP values is the model's prediction.
    total = logged[BASE_COLUMN].to_numpy() + logged[[SHAP_PREFIX + f for f in features]].sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, model.predict(x), rtol=1e-6)
    assert len(logged) == spec.report.shap_sample

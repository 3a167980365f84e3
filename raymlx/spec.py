"""The experiment spec: pydantic models for every section of ``specs.yaml``."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Spec", "DataSpec", "ValidationSpec", "MetricSpec", "TrackingSpec", "RuntimeSpec",
    "StepSpec", "ModelSpec", "SearchSpec", "ResourcesSpec", "FloatParam", "IntParam",
    "ChoiceParam", "Param", "ServeSpec", "AutoscalingSpec", "BatchingSpec", "PromotionSpec", "ReportSpec",
    "BaselineSpec", "DEFAULT_TRACKING_URI",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # the embedded store, next to the spec

Task = Literal["regression", "classification", "forecasting"]


class SpecModel(BaseModel):
    """Base of every spec section: unknown keys are errors, never dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(SpecModel):
    uri: str = Field(description="CSV or Parquet location: a path relative to the spec, file://, https://, s3:// or gs://.")
    target: str = Field(description="Column to predict.")
    time_column: str | None = Field(None, description="Column holding the timestamp; required for forecasting.")
    columns: list[str] | None = Field(None, description="Input columns to use; default: every column but the target.")
    future_columns: list[str] = Field(default_factory=list, description=(
        "Forecasting: columns whose values over the forecast window are known at the cutoff (planned events, "
        "weather forecasts); every other column is known only up to the cutoff."))
    format: Literal["csv", "parquet"] | None = Field(None, description="File format; default: from the file suffix.")
    read_options: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments for pandas.read_csv / read_parquet.")


class ValidationSpec(SpecModel):
    strategy: Literal["kfold", "holdout", "expanding_window", "sliding_window"] | None = Field(
        None, description="How folds are made; default: expanding_window for forecasting, kfold otherwise.")
    folds: int = Field(5, ge=1, description="Number of folds (ignored by holdout).")
    horizon: int | None = Field(None, ge=1, description="Forecasting: rows scored after each cutoff.")
    window: int | None = Field(None, ge=1, description="sliding_window: training rows before each cutoff.")
    test_size: float = Field(0.2, gt=0, lt=1, description="holdout: fraction of rows held out.")
    shuffle: bool = Field(True, description="kfold/holdout: shuffle rows before splitting.")
    seed: int = Field(0, description="Seed for shuffling.")


class MetricSpec(SpecModel):
    name: str = Field(description="A built-in metric (raymlx.metrics.BUILTIN_METRICS; `raymlx validate` names them "
                                  "on a typo) or module:function.")
    mode: Literal["min", "max"] | None = Field(None, description="Whether lower or higher is better; built-ins know their own.")


class TrackingSpec(SpecModel):
    uri: str = Field(DEFAULT_TRACKING_URI, description="MLflow tracking URI; a relative sqlite path is relative to the spec.")
    experiment: str | None = Field(None, description="MLflow experiment name; default: the spec's name.")
    registered_model: str | None = Field(None, description="Registered model name of the champion; default: the spec's name.")


class RuntimeSpec(SpecModel):
    address: str | None = Field(None, description="null: $RAY_ADDRESS if set (as in a Ray Job), else a new local Ray runtime; "
                                               "'auto' or ray://host:10001: an existing cluster.")
    storage_path: str | None = Field(None, description="Where Tune keeps experiment state; shared storage (s3://...) on a cluster.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray runtime; default: all.")
    object_store_memory_mb: int = Field(512, ge=78, description="Object store size of the local Ray runtime, in MiB.")
    max_concurrent_trials: int | None = Field(None, ge=1, description="Trials running at once across all models; default: as CPUs allow.")
    trials_on_driver: bool = Field(True, description="While a local Ray runtime starts, evaluate the first "
                                   "configuration in the raymlx process (still a trial and a child run); false: "
                                   "every trial in Ray's workers.")


class StepSpec(SpecModel):
    step: str = Field(description="A step reference (module:attr, file.py:attr, a built-in name) or the name of another pipeline.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the step.")


class _RangeParam(SpecModel):
    log: bool = Field(False, description="Sample on a log scale.")

    @model_validator(mode="after")
    def _check_range(self) -> _RangeParam:
        low, high, step = self.low, self.high, self.step  # type: ignore[attr-defined]  # declared by each kind
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"`low` and `high` must be finite numbers, but got (low={low}, high={high})")
        if low > high:
            raise ValueError(f"`low <= high` must hold, but got (low={low}, high={high})")
        if self.log and low <= 0:
            raise ValueError(f"`low > 0` must hold for log=true, but got (low={low})")
        if self.log and step is not None:
            raise ValueError(f"`step` cannot be used with log=true, but got (step={step})")
        if step is not None and step <= 0:
            raise ValueError(f"`step > 0` must hold, but got (step={step})")
        return self


class FloatParam(_RangeParam):
    type: Literal["float"] = Field(description="A real number between low and high.")
    low: float = Field(description="Smallest value.")
    high: float = Field(description="Largest value.")
    step: float | None = Field(None, description="Spacing of allowed values.")


class IntParam(_RangeParam):
    type: Literal["int"] = Field(description="An integer between low and high, inclusive.")
    low: int = Field(description="Smallest value.")
    high: int = Field(description="Largest value.")
    step: int | None = Field(None, description="Spacing of allowed values.")


class ChoiceParam(SpecModel):
    type: Literal["choice"] = Field(description="One of a list of values.")
    values: list[Any] = Field(min_length=1, description="The values to choose from.")


Param = Annotated[Union[FloatParam, IntParam, ChoiceParam], Field(discriminator="type")]


class SearchSpec(SpecModel):
    algorithm: Literal["optuna", "random", "grid"] = Field("optuna", description="optuna (TPE), random, or grid over choice/stepped values.")
    num_samples: int = Field(10, ge=1, description="Trials to run for this model.")
    space: dict[str, Param] = Field(default_factory=dict, description="Hyperparameters to search, by parameter name.")
    seed: int | None = Field(0, description="Seed of the sampler; null: random.")


class ResourcesSpec(SpecModel):
    cpu: float = Field(1, gt=0, description="CPUs per trial.")
    gpu: float = Field(0, ge=0, description="GPUs per trial.")


class ModelSpec(SpecModel):
    model: str = Field(description="Estimator class (scikit-learn API), built-in adapter or train function: module:attr, file.py:attr or a built-in name.")
    pipeline: str | None = Field(None, description="Name of the pipeline preparing this model's features; default: none.")
    params: dict[str, Any] = Field(default_factory=dict, description="Fixed parameters, merged under the searched ones.")
    search: SearchSpec = Field(default_factory=SearchSpec, description="Hyperparameter search.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Resources of one trial.")
    max_failures: int = Field(0, ge=0, description="Retries of a trial that raises before it is recorded as failed.")


class BaselineSpec(SpecModel):
    enabled: bool = Field(True, description=(
        "Add the baseline to the leaderboard: the mean (regression), the majority class (classification) or the "
        "seasonal naive forecast with the best of a few season lengths (forecasting), scored on the same folds."))
    may_win: bool = Field(False, description="Let the baseline be the champion when no model beats it; "
                                             "default: the best other model is registered, with a warning.")


class AutoscalingSpec(SpecModel):
    min_replicas: int = Field(1, ge=0, description="Fewest replicas.")
    max_replicas: int = Field(2, ge=1, description="Most replicas.")
    target_ongoing_requests: float = Field(4, gt=0, description="Requests per replica the autoscaler aims for.")

    @model_validator(mode="after")
    def _check_bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"`min_replicas <= max_replicas` must hold, but got "
                             f"(min_replicas={self.min_replicas}, max_replicas={self.max_replicas})")
        return self


class BatchingSpec(SpecModel):
    max_batch_size: int = Field(32, ge=1, description="Most requests answered by one model call.")
    batch_wait_timeout_s: float = Field(0.01, ge=0, description="Longest wait for a batch to fill.")


class ServeSpec(SpecModel):
    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP server.")
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec, description="Replica autoscaling.")
    batching: BatchingSpec = Field(default_factory=BatchingSpec, description="Request batching.")
    num_cpus: float = Field(1.0, gt=0, description=(
        "CPUs each replica reserves on its Ray node; a fraction packs several replicas on one CPU "
        "(0.5: a 1-CPU node can take over the replica of a node that went away)."))


class PromotionSpec(SpecModel):
    metric_margin: float = Field(0.0, ge=0, description=(
        "How much the new winner must improve on the current champion, rescored on this run's folds, to take "
        "the `champion` alias (in the metric's units); 0 lets an equal model refit on newer data through. "
        "A winner that falls short is registered under the alias `challenger`."))


class ReportSpec(SpecModel):
    enabled: bool = Field(True, description="Write the report at the end of `raymlx tune`: charts and explanations "
                                            "logged to each model's MLflow run, and one offline HTML file.")
    output: str = Field("report.html", description="Where `raymlx tune` writes the HTML report, relative to the spec.")
    shap_sample: int = Field(200, ge=1, description="Most rows whose predictions SHAP explains, per model.")
    shap_background: int = Field(25, ge=1, description="Rows standing in for an unknown feature in the "
                                                       "kernel explainer (models that are neither linear nor trees).")
    time_budget_s: float = Field(5.0, gt=0, description="Seconds of CPU SHAP may take per model; fewer rows are "
                                                         "explained when all of shap_sample would take longer.")


class Spec(SpecModel):
    """A whole experiment: data, folds, metric, pipelines, models, tracking and serving."""

    name: str = Field(min_length=1, description="Name of the experiment.")
    task: Task = Field(description="regression, classification or forecasting.")
    data: DataSpec = Field(description="The data set.")
    validation: ValidationSpec = Field(default_factory=ValidationSpec, description="The fold plan every model is scored on.")
    metric: MetricSpec | None = Field(None, description="Metric that picks the best model; default: rmse, or accuracy for classification.")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="MLflow tracking and registry.")
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec, description="Where Ray runs.")
    pipelines: dict[str, list[StepSpec]] = Field(default_factory=dict, description="Named cleaning and feature pipelines.")
    models: dict[str, ModelSpec] = Field(min_length=1, description="The models to tune and compare, by name.")
    serve: ServeSpec = Field(default_factory=ServeSpec, description="How the champion is served.")
    promotion: PromotionSpec = Field(default_factory=PromotionSpec, description="When a new winner replaces the champion.")
    report: ReportSpec = Field(default_factory=ReportSpec, description="Charts, explanations and the HTML report.")
    baseline: Union[bool, BaselineSpec] = Field(True, description=(
        "The baseline row every leaderboard carries and every model's skill is measured against; "
        "false leaves it out (see BaselineSpec)."))

    @property
    def baseline_spec(self) -> BaselineSpec:
        """The baseline section, with ``baseline: true|false`` read as ``enabled``."""
        return BaselineSpec(enabled=self.baseline) if isinstance(self.baseline, bool) else self.baseline

    @property
    def metric_spec(self) -> MetricSpec:
        """The metric, with the task's default filled in."""
        if self.metric is not None:
            return self.metric
        return MetricSpec(name="accuracy" if self.task == "classification" else "rmse")

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def registered_model_name(self) -> str:
        return self.tracking.registered_model or self.name

    @property
    def strategy(self) -> str:
        default = "expanding_window" if self.task == "forecasting" else "kfold"
        return self.validation.strategy or default

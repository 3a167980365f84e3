"""Shared storage for real: `s3://` data and `runtime.storage_path: s3://...` against an S3 server on 127.0.0.1 (moto).

Both readers take the endpoint from ``AWS_ENDPOINT_URL``: fsspec's s3fs (the data) and pyarrow's S3 filesystem,
which Ray Tune builds from an ``s3://`` storage path (the experiment's state).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import DIABETES

SPEC = """
name: from-s3
task: regression
data: {uri: "s3://shared/data/diabetes.csv", target: progression}
validation: {folds: 2}
runtime: {storage_path: "s3://shared/tune"}
baseline: false  # the two trials counted below are ridge's
report: {enabled: false}
models:
  ridge:
    model: sklearn.linear_model:Ridge
    search: {algorithm: random, num_samples: 2, space: {alpha: {type: float, low: 0.1, high: 10.0, log: true}}}
"""


@pytest.fixture
def s3():
    """A moto S3 server on a free port of 127.0.0.1 with a bucket `shared`; the environment every client needs."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket="shared")
        yield client, env
    finally:
        server.stop()


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="shared", Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_data_is_read_from_s3_and_tune_state_is_written_there(s3, tmp_path):
    client, s3_env = s3
    client.upload_file(str(DIABETES), "shared", "data/diabetes.csv")
    (tmp_path / "specs.yaml").write_text(textwrap.dedent(SPEC))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env.update(s3_env, RAY_AUTH_MODE="disabled")
    process = subprocess.run([sys.executable, "-m", "raymlx.cli", "tune", "specs.yaml"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=400)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-3000:]
    assert "champion: ridge registered" in process.stdout
    keys = _keys(client, "tune/from-s3_")  # each session's own directory: <name>_<time>_<pid>
    assert any(k.rsplit("/", 1)[-1].startswith("experiment_state") for k in keys), keys
    assert sum(k.endswith("/result.json") for k in keys) == 2, keys  # one per trial, written by Tune to the bucket
    assert not (tmp_path / ".raymlx" / "ray_results").exists()  # nothing of Tune's state stayed local


def test_a_missing_s3_object_is_named_in_a_clear_error(s3, tmp_path):
    _, s3_env = s3
    (tmp_path / "specs.yaml").write_text(textwrap.dedent(SPEC).replace("diabetes.csv", "missing.csv"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env.update(s3_env, RAY_AUTH_MODE="disabled")
    process = subprocess.run([sys.executable, "-m", "raymlx.cli", "tune", "specs.yaml"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=200)
    assert process.returncode == 2, process.stdout[-2000:] + process.stderr[-3000:]
    assert "s3://shared/data/missing.csv" in process.stdout + process.stderr

"""Shared storage for real: `s3://` data and `runtime.storage_path: s3://...` against an S3 server on 127.0.0.1 (moto).

Both readers take the endpoint from ``AWS_ENDPOINT_URL``: fsspec's s3fs (the data) and pyarrow's S3 filesystem,
which Ray Tune builds from an ``s3://`` storage path (the experiment's state).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import DIABETES
from tests.reliability.conftest import driver  # noqa: F401 - the fixture
from tests.reliability.test_interrupt import TOTAL, _assert_completed_once

SPEC = """
name: from-s3
task: regression
data: {uri: "s3://shared/data/diabetes.csv", target: progression}
validation: {folds: 2}
runtime: {storage_path: "s3://shared/tune"}
baseline: false
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


def test_data_from_s3_tune_state_in_the_bucket_and_an_interrupted_run_resumed_from_it(s3, driver, monkeypatch):
    """Ctrl-C mid-trials, then `--resume`: Tune's state is read back from the bucket, so the trials that ended
    before the interrupt are not run again (after a fresh start the bucket holds the results of more trials)."""
    client, s3_env = s3
    client.upload_file(str(DIABETES), "shared", "data/diabetes.csv")
    for key, value in {**s3_env, "RAY_AUTH_MODE": "disabled"}.items():
        monkeypatch.setenv(key, value)
    shutil.rmtree(driver.project / "data")  # the data is the bucket's
    spec = driver.project / "specs.yaml"
    spec.write_text(spec.read_text().replace("data/diabetes.csv", "s3://shared/data/diabetes.csv")
                    .replace("runtime: {", 'runtime: {storage_path: "s3://shared/tune", ') + "report: {enabled: false}\n")
    driver.start()
    driver.wait_until(lambda: driver.trials_finished() >= 2)
    driver.interrupt()
    code, out, err = driver.finish()
    assert code == 130 and "resume with: raymlx tune specs.yaml --resume" in err, err[-3000:]
    (session,) = {k.split("/")[1] for k in _keys(client, "tune/reliable_")}  # <name>_<time>_<pid>
    assert any(k.rsplit("/", 1)[-1].startswith("experiment_state") for k in _keys(client, f"tune/{session}/"))

    code, out, err = driver.run("--resume")
    assert code == 0, out[-2000:] + err[-3000:]
    assert "champion: first registered" in out or "champion: second registered" in out
    _assert_completed_once(driver)  # every seeded configuration once: the ended trials were not run again
    keys = _keys(client, "tune/")
    assert {k.split("/")[1] for k in keys} - {""} == {session}  # the resumed run went on in the same directory
    assert sum(k.endswith("/result.json") for k in keys) == TOTAL, keys  # one per trial, written by Tune
    assert not (driver.project / ".raymlx" / "ray_results").exists()  # nothing of Tune's state stayed local


def test_a_missing_s3_object_is_named_in_a_clear_error(s3, tmp_path):
    _, s3_env = s3
    (tmp_path / "specs.yaml").write_text(textwrap.dedent(SPEC).replace("diabetes.csv", "missing.csv"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env.update(s3_env, RAY_AUTH_MODE="disabled")
    process = subprocess.run([sys.executable, "-m", "raymlx.cli", "tune", "specs.yaml"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=200)
    assert process.returncode == 2, process.stdout[-2000:] + process.stderr[-3000:]
    assert "s3://shared/data/missing.csv" in process.stdout + process.stderr

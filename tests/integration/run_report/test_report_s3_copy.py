"""The report's copy to S3: with run_report_s3_bucket in the load balancer's variables the three files land in the
bucket (a real moto S3 server) under reports/, byte for byte, with the backup store's endpoint and credentials, and no
credential appears in the run's output; an S3 that cannot be reached leaves a warning and the local report."""

from __future__ import annotations

import os
import sys
import typing as t
from pathlib import Path

import pytest

from conftest import Run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "webhook_secret_store"))
from secret_store_servers import Moto  # noqa: E402  pylint: disable=wrong-import-position

boto3 = pytest.importorskip("boto3")
BUCKET = "payments-backups"


@pytest.fixture(scope="module")
def s3() -> t.Iterator[Moto]:
    server = Moto()
    yield server
    server.stop()


def s3_vars(endpoint: str, secret: str) -> dict[str, t.Any]:
    return {"deploy_journal_dir": "{{ run_report_journal_dir }}", "run_report_s3_bucket": BUCKET,
            "backup_s3_endpoint_url": endpoint, "backup_s3_region": "us-east-1",
            "backup_aws_access_key_id": "reports-test", "backup_aws_secret_access_key": secret}


def test_report_copied_to_the_backup_bucket(run_playbook: t.Callable[..., Run], s3: Moto) -> None:
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="y")
    client.create_bucket(Bucket=BUCKET)
    secret = "s3-secret-" + os.urandom(8).hex()
    run = run_playbook(load_balancer_vars=s3_vars(s3.endpoint, secret), env_extra={"PAYMENTS_RUN_REPORT_PROMETHEUS_URL": "none"})
    assert run.rc == 0, run.output
    local = run.files()
    stored = {item["Key"] for item in client.list_objects_v2(Bucket=BUCKET, Prefix="reports/").get("Contents", [])}
    assert stored == {f"reports/{path.name}" for path in local.values()}
    for path in local.values():
        body = client.get_object(Bucket=BUCKET, Key=f"reports/{path.name}")["Body"].read()
        assert body == path.read_bytes()
    assert f"Run report copied to s3://{BUCKET}/reports/" in run.output
    assert secret not in run.output


def test_unreachable_s3_leaves_a_warning_and_the_local_report(run_playbook: t.Callable[..., Run]) -> None:
    from loopback_ports import free_port  # pylint: disable=import-outside-toplevel

    secret = "s3-secret-" + os.urandom(8).hex()
    run = run_playbook(load_balancer_vars=s3_vars(f"http://127.0.0.1:{free_port()}", secret),
                       env_extra={"PAYMENTS_RUN_REPORT_PROMETHEUS_URL": "none"})
    assert run.rc == 0, run.output
    assert all(path.is_file() for path in run.files().values())
    assert f"the report was not copied to s3://{BUCKET}/reports/" in run.output
    assert secret not in run.output

# Copyright: Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copies a run report's files to S3, in the backup store's bucket (or another), beside the backups they describe."""

from __future__ import annotations

import typing as t
from pathlib import Path

CONTENT_TYPES = {".json": "application/json", ".md": "text/markdown; charset=utf-8", ".html": "text/html; charset=utf-8"}


def s3_settings(inventory: t.Mapping[str, t.Any]) -> dict[str, t.Any] | None:
    """The S3 copy's settings from the inventory (run_report_s3_* over the backup store's backup_s3_*), or None when no
    bucket is named for reports."""
    bucket = inventory.get("run_report_s3_bucket")
    if not bucket:
        return None
    prefix = str(inventory.get("run_report_s3_prefix") or "reports/")
    return {
        "bucket": str(bucket),
        "prefix": prefix if prefix.endswith("/") else prefix + "/",
        "endpoint_url": inventory.get("run_report_s3_endpoint_url") or inventory.get("backup_s3_endpoint_url") or None,
        "region": inventory.get("run_report_s3_region") or inventory.get("backup_s3_region") or None,
        "access_key": inventory.get("run_report_aws_access_key_id") or inventory.get("backup_aws_access_key_id") or None,
        "secret_key": inventory.get("run_report_aws_secret_access_key") or inventory.get("backup_aws_secret_access_key") or None,
        "sse": str(inventory.get("run_report_s3_sse") or inventory.get("backup_s3_sse") or "AES256"),
    }


def copy_to_s3(paths: list[str], settings: dict[str, t.Any]) -> list[str]:
    """Uploads each file as <prefix><environment-less run file name>; returns the s3:// URLs written. Raises on any
    failure (the callback turns it into a warning)."""
    # Imported here, not with the callback: importing boto3 costs about 0.4 s, at the start of every playbook run.
    try:
        import boto3  # pylint: disable=import-outside-toplevel
        import botocore.config  # pylint: disable=import-outside-toplevel
    except ImportError as exc:  # the callback turns it into a warning: the local report is written all the same
        raise RuntimeError("boto3 is not installed on the controller") from exc
    client = boto3.client(
        "s3", endpoint_url=settings["endpoint_url"], region_name=settings["region"],
        aws_access_key_id=settings["access_key"], aws_secret_access_key=settings["secret_key"],
        config=botocore.config.Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=30))
    written = []
    for path in paths:
        name = Path(path).name
        extra = {"ContentType": CONTENT_TYPES.get(Path(path).suffix, "application/octet-stream")}
        if settings["sse"] != "none":
            extra["ServerSideEncryption"] = settings["sse"]
        with open(path, "rb") as handle:
            client.put_object(Bucket=settings["bucket"], Key=settings["prefix"] + name, Body=handle, **extra)
        written.append(f"s3://{settings['bucket']}/{settings['prefix']}{name}")
    return written

"""Unit tests of maintenance_backup_info on a real backup directory: manifests written as pg_backup writes them
(authenticated with the key's HMAC), a fresh backup passes, an old one, a tampered manifest, a missing object and an
empty store are each a breach, and bad options are refused before the store is read."""

from __future__ import annotations

import datetime
import json
import secrets

import pytest

from stripe_module_runner import run

from ansible_collections.payments.deploy.plugins.module_utils import _crypto as crypto
from ansible_collections.payments.deploy.plugins.modules import maintenance_backup_info

KEY_HEX = secrets.token_hex(32)


def write_backup(directory, hours_ago: float, with_object: bool = True, tamper: bool = False) -> str:
    created = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours_ago)
    backup_id = f"payments-{created.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    key = bytes.fromhex(KEY_HEX)
    manifest = {"backup_id": backup_id, "database": "payments", "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "sha256": "0" * 64, "encryption": {"key_id": crypto.key_id(key)}, "row_counts": {"payments": 3}}
    manifest["mac"] = crypto.manifest_mac(key, manifest)
    if tamper:
        manifest["row_counts"] = {"payments": 4}
    (directory / f"{backup_id}.manifest.json").write_text(json.dumps(manifest))
    if with_object:
        (directory / f"{backup_id}.dump.zst.enc").write_bytes(b"PAYBAK")
    return backup_id


def check(directory, capsys, **extra) -> dict:
    return run(maintenance_backup_info, capsys, {"database": "payments", "dest_dir": str(directory),
                                                 "encryption_key": KEY_HEX, **extra})


def test_a_fresh_authentic_backup_passes(tmp_path, capsys):
    write_backup(tmp_path, hours_ago=30)
    newest = write_backup(tmp_path, hours_ago=2)
    result = check(tmp_path, capsys)
    assert result["breaches"] == [] and result["count"] == 2 and result["changed"] is False
    assert result["newest"]["backup_id"] == newest and result["newest"]["authentic"] and result["newest"]["object_present"]
    assert 1.9 < result["newest"]["age_hours"] < 2.5
    assert KEY_HEX not in result["_raw"]


def test_a_backup_older_than_the_limit_is_a_breach(tmp_path, capsys):
    old = write_backup(tmp_path, hours_ago=30)
    result = check(tmp_path, capsys)
    assert len(result["breaches"]) == 1 and old in result["breaches"][0] and "not younger than 26.0 h" in result["breaches"][0]
    assert check(tmp_path, capsys, max_age_hours=48)["breaches"] == []


def test_a_tampered_manifest_and_a_missing_object_are_breaches(tmp_path, capsys):
    backup_id = write_backup(tmp_path, hours_ago=1, with_object=False, tamper=True)
    breaches = check(tmp_path, capsys)["breaches"]
    assert any("failed authentication" in b and backup_id in b for b in breaches)
    assert any("is missing" in b for b in breaches)


def test_an_empty_store_is_a_breach(tmp_path, capsys):
    result = check(tmp_path, capsys)
    assert result["newest"] is None and result["breaches"] == [f"no backup of payments in {tmp_path}"]


@pytest.mark.parametrize(("options", "expected"), [
    ({"max_age_hours": -5.0}, "max_age_hours -5.0 must be a number of hours above 0"),
    ({"encryption_key": "abc"}, "encryption_key must be 64 hexadecimal characters"),
    ({"database": "pay ments"}, "is not a plain database name"),
])
def test_bad_options_are_refused_before_the_store_is_read(tmp_path, capsys, options, expected):
    result = check(tmp_path, capsys, **options)
    assert result["failed"] and expected in result["msg"] and "the store was not read" in result["msg"]
    assert "abc" not in result["msg"]

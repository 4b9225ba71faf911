"""Unit tests of pg_backup's input checks and of the pieces it is built from (stores, client programs, schema fingerprint).

Runs without PostgreSQL: anything that would connect or start a program fails the test. The real runs are in
tests/integration/postgres_backup.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _backup_store as store_lib
from ansible_collections.payments.deploy.plugins.module_utils import _crypto as crypto
from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg
from ansible_collections.payments.deploy.plugins.modules import pg_backup

KEY = "0f" * 32


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the module connects to a database or starts a program."""

    def forbidden(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise AssertionError(f"nothing may run, but it was called with {args!r}")

    monkeypatch.setattr(pg.psycopg, "connect", forbidden)
    monkeypatch.setattr(pg.subprocess, "Popen", forbidden)
    monkeypatch.setattr(pg.subprocess, "run", forbidden)
    monkeypatch.delenv("ENCRYPTION_KEY", raising=False)


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], check: bool = False) -> dict[str, t.Any]:
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        pg_backup.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.usefixtures("nothing_runs")
def test_all_input_problems_are_reported_together_before_anything_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run(capsys, {"db": "pay/ments", "encryption_key": "12345", "keep": 0, "compression_level": 30,
                          "verify": False, "verify_restore": True, "migration_registry_table": "x; DROP TABLE y"})
    assert result["failed"] is True
    for problem in ("encryption_key must be 64 hexadecimal characters (32 bytes) but has 5 characters",
                    "no destination: set dest_dir and/or s3_bucket", "db 'pay/ments' cannot name backup files",
                    "keep must be at least 1", "compression_level must be between 1 and 19", "verify_restore needs verify=true",
                    "migration_registry_table 'x; DROP TABLE y' must be 'table' or 'schema.table'"):
        assert problem in result["msg"]
    assert result["commands"] == [] and result["queries"] == []
    assert "12345" not in result["msg"]


@pytest.mark.usefixtures("nothing_runs")
def test_missing_key_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run(capsys, {"db": "payments", "dest_dir": str(tmp_path / "dest")})
    assert result["msg"] == ("encryption_key is missing: set the option or the ENCRYPTION_KEY environment variable "
                             "(64 hexadecimal characters, 32 bytes)")
    assert not (tmp_path / "dest").exists()


@pytest.mark.usefixtures("nothing_runs")
def test_key_from_the_environment_is_checked_too(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENCRYPTION_KEY", "xyz" * 21 + "x")
    result = run(capsys, {"db": "payments", "dest_dir": str(tmp_path)})
    assert "encryption_key must be 64 hexadecimal characters (32 bytes) but contains characters that are not hexadecimal" in result["msg"]
    assert "xyz" not in json.dumps(result)


@pytest.mark.usefixtures("nothing_runs")
def test_missing_library_is_reported(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(crypto, "HAS_ZSTANDARD", False)
    monkeypatch.setattr(crypto, "ZSTANDARD_IMPORT_ERROR", "Traceback: No module named 'zstandard'")
    result = run(capsys, {"db": "payments", "dest_dir": str(tmp_path), "encryption_key": KEY})
    assert "Failed to import the required Python library (zstandard)" in result["msg"]


@pytest.mark.usefixtures("nothing_runs")
def test_migration_head_options_are_exclusive(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run(capsys, {"db": "payments", "dest_dir": str(tmp_path), "encryption_key": KEY, "migration_head": "a",
                          "migration_registry_table": "payments_deploy.changes"})
    assert "mutually exclusive" in result["msg"]


# --- schema fingerprint ------------------------------------------------------------------------------------

PLAIN_DUMP = """--
-- PostgreSQL database dump
--

\\restrict {key}

-- Dumped from database version 15.{minor}
-- Dumped by pg_dump version 15.{minor}

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);

CREATE TABLE public.payments (
    id bigint NOT NULL,
    note text DEFAULT '-- not a comment'::text
);

ALTER TABLE public.payments OWNER TO payments;

--
-- PostgreSQL database dump complete
--

\\unrestrict {key}
"""


def test_schema_fingerprint_ignores_what_changes_between_dumps_of_one_schema() -> None:
    first = pg.schema_fingerprint(PLAIN_DUMP.format(key="aB3dE5", minor=14))
    second = pg.schema_fingerprint(PLAIN_DUMP.format(key="zY9xW8", minor=18))
    assert first == second and first.startswith("sha256:")
    normalised = pg.normalise_schema(PLAIN_DUMP.format(key="k", minor=1))
    assert normalised == ("CREATE TABLE public.payments (\n    id bigint NOT NULL,\n    note text DEFAULT '-- not a comment'::text\n"
                          ");\nALTER TABLE public.payments OWNER TO payments;\n")


def test_schema_fingerprint_changes_with_the_schema() -> None:
    changed = PLAIN_DUMP.replace("id bigint NOT NULL", "id integer NOT NULL")
    assert pg.schema_fingerprint(PLAIN_DUMP.format(key="a", minor=1)) != pg.schema_fingerprint(changed.format(key="a", minor=1))


def test_compare_row_counts() -> None:
    assert pg.compare_row_counts({"public.a": 1, "public.b": 2}, {"public.a": 1, "public.b": 2}) == []
    assert pg.compare_row_counts({"public.a": 1, "public.b": 2}, {"public.a": 3, "public.c": 0}) == [
        "table public.a has 3 rows instead of 1", "table public.b is missing", "table public.c was not in the backup"]


# --- client programs ---------------------------------------------------------------------------------------


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def connection(password: str | None = "s3cr3t-pw") -> pg.Connection:
    return pg.Connection({"login_host": "db.internal", "login_port": 5433, "login_user": "backup", "login_password": password,
                          "ssl_mode": "verify-full", "ca_cert": "/etc/ca.pem", "connect_timeout": 7})


def test_libpq_environment_carries_the_password_and_describe_does_not() -> None:
    conn = connection()
    assert conn.env() == {"PGHOST": "db.internal", "PGPORT": "5433", "PGUSER": "backup", "PGSSLMODE": "verify-full",
                          "PGCONNECT_TIMEOUT": "7", "PGAPPNAME": "payments.deploy", "PGSSLROOTCERT": "/etc/ca.pem",
                          "PGPASSWORD": "s3cr3t-pw"}
    assert "s3cr3t-pw" not in json.dumps(conn.describe())
    assert "PGPASSWORD" not in connection(None).env()


def test_child_failure_message_is_scrubbed(tmp_path: Path) -> None:
    program = script(tmp_path / "pg_dump", 'echo "pg_dump: error: bad password $PGPASSWORD" >&2; exit 3')
    child = pg.Child([str(program)], connection())
    with pytest.raises(pg.PostgresError) as caught:
        child.check()
    assert str(caught.value) == "pg_dump exited with status 3: pg_dump: error: bad password ********"


def test_child_killed_by_a_signal(tmp_path: Path) -> None:
    program = script(tmp_path / "pg_dump", "kill -9 $$")
    with pytest.raises(pg.PostgresError, match="pg_dump was killed by signal 9 without a message"):
        pg.Child([str(program)], connection()).check()


def test_feeding_a_program_that_exited_reports_its_error(tmp_path: Path) -> None:
    program = script(tmp_path / "pg_restore", 'echo "pg_restore: error: input file is not a valid archive" >&2; exit 1')
    child = pg.Child([str(program)], connection(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    child.wait()
    with pytest.raises(pg.PostgresError, match="pg_restore exited with status 1: pg_restore: error: input file is not a valid archive"):
        for _unused in range(100):
            child.feed(b"x" * 65536)


def test_feeder_surfaces_the_first_error() -> None:
    seen: list[bytes] = []

    def write(data: bytes) -> None:
        if data == b"bad":
            raise OSError("broken pipe")
        seen.append(data)

    feeder = pg.Feeder(write)
    feeder(b"a")
    feeder(b"bad")
    with pytest.raises(OSError, match="broken pipe"):
        for _unused in range(100):
            feeder(b"b")
        feeder.close()
    assert seen[0] == b"a"


def test_client_version_and_the_major_check(tmp_path: Path) -> None:
    program = script(tmp_path / "pg_dump", 'echo "pg_dump (PostgreSQL) 14.9 (Debian 14.9-1)"')
    assert pg.client_version(str(program)) == (14, "14.9")
    assert pg.require_client(str(program), 14, "the server") == "14.9"
    with pytest.raises(pg.PostgresError, match=r"pg_dump is version 14\.9, older than the server \(major 15\)"):
        pg.require_client(str(program), 15, "the server")


def test_pg_bin_dir_without_the_program(tmp_path: Path) -> None:
    with pytest.raises(pg.PostgresError, match=f"pg_dump not found or not executable in pg_bin_dir {tmp_path}"):
        pg.find_client("pg_dump", str(tmp_path), 15)


def test_major_of() -> None:
    assert pg.major_of(150018) == 15 and pg.major_of(90624) == 9


# --- the local store -----------------------------------------------------------------------------------------


def test_local_upload_appears_only_when_committed(tmp_path: Path) -> None:
    store = store_lib.LocalStore(str(tmp_path))
    upload = store.upload("b-1.dump.zst.enc")
    upload.write(b"data")
    assert os.listdir(tmp_path) != ["b-1.dump.zst.enc"] and len(os.listdir(tmp_path)) == 1
    upload.commit()
    assert os.listdir(tmp_path) == ["b-1.dump.zst.enc"]
    assert (tmp_path / "b-1.dump.zst.enc").read_bytes() == b"data"


def test_local_upload_abort_leaves_nothing(tmp_path: Path) -> None:
    upload = store_lib.LocalStore(str(tmp_path)).upload("b-1.dump.zst.enc")
    upload.write(b"partial")
    upload.abort()
    upload.abort()
    assert os.listdir(tmp_path) == []


def test_local_check_creates_a_private_directory(tmp_path: Path) -> None:
    target = tmp_path / "backups"
    store_lib.LocalStore(str(target)).check(create=False)
    assert not target.exists()
    store_lib.LocalStore(str(target)).check(create=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    (tmp_path / "file").write_text("")
    with pytest.raises(store_lib.StoreError, match="exists but is not a directory"):
        store_lib.LocalStore(str(tmp_path / "file")).check(create=True)


def test_manifests_of_one_database_newest_first(tmp_path: Path) -> None:
    store = store_lib.LocalStore(str(tmp_path))
    for backup_id, database, created in (("pay-1", "pay", "2025-01-01T00:00:00.000000Z"), ("pay-3", "pay", "2025-03-01T00:00:00.000000Z"),
                                         ("pay-2", "pay", "2025-02-01T00:00:00.000000Z"), ("pay-x-1", "pay-x", "2025-04-01T00:00:00.000000Z")):
        store.put_text(store_lib.manifest_name(backup_id), json.dumps({"backup_id": backup_id, "database": database, "created_at": created}))
    (tmp_path / "pay-9.manifest.json").write_text("{not json")
    assert [m["backup_id"] for m in store.manifests("pay")] == ["pay-3", "pay-2", "pay-1"]
    assert [m["backup_id"] for m in store.manifests("pay-x")] == ["pay-x-1"]

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


def test_libpq_environment_holds_no_password_and_describe_neither() -> None:
    conn = connection()
    assert conn.env() == {"PGHOST": "db.internal", "PGPORT": "5433", "PGUSER": "backup", "PGSSLMODE": "verify-full",
                          "PGCONNECT_TIMEOUT": "7", "PGAPPNAME": "payments.deploy", "PGSSLROOTCERT": "/etc/ca.pem"}
    assert "s3cr3t-pw" not in json.dumps(conn.describe())


def test_child_environment_is_minimal_and_the_password_is_in_a_private_passfile(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"ENCRYPTION_KEY": "ab" * 32, "AWS_SECRET_ACCESS_KEY": "aws-secret", "PGPASSWORD": "other-pw",
                        "PGSERVICE": "elsewhere", "LC_ALL": "C.UTF-8", "HOME": "/home/x"}.items():
        monkeypatch.setenv(name, value)
    conn = pg.Connection({"login_host": "db:internal", "login_port": 5433, "login_user": "backup", "login_password": r"pw:with\colon",
                          "ssl_mode": "require", "connect_timeout": 7})
    env = conn.child_env()
    assert not {"ENCRYPTION_KEY", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD", "PGSERVICE"} & set(env)
    assert env["LC_ALL"] == "C.UTF-8" and env["HOME"] == "/home/x" and env["PGHOST"] == "db:internal"
    passfile = Path(env["PGPASSFILE"])
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600 and stat.S_IMODE(passfile.parent.stat().st_mode) == 0o700
    assert passfile.read_text() == "db\\:internal:5433:*:backup:pw\\:with\\\\colon\n"  # host, port and user of this connection only
    assert conn.child_env()["PGPASSFILE"] == str(passfile), "one file per connection"
    conn.remove_passfile()
    assert not passfile.exists() and not passfile.parent.exists()
    fallback = connection(None)  # no login_password: the module's PGPASSWORD, through a password file all the same
    assert Path(fallback.child_env()["PGPASSFILE"]).read_text().endswith(":backup:other-pw\n")
    fallback.remove_passfile()
    monkeypatch.delenv("PGPASSWORD")
    assert "PGPASSFILE" not in connection(None).child_env()


def test_database_names_reach_client_programs_as_a_quoted_dbname() -> None:
    assert pg.dbname_conninfo("payments") == "dbname='payments'"
    assert pg.dbname_conninfo("host=evil dbname=x") == "dbname='host=evil dbname=x'"
    assert pg.dbname_conninfo("o'k\\") == "dbname='o\\'k\\\\'"


def test_child_failure_message_is_scrubbed(tmp_path: Path) -> None:
    program = script(tmp_path / "pg_dump", 'echo "pg_dump: error: bad password $(cut -d: -f5 "$PGPASSFILE")" >&2; exit 3')
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


def manifest_of(backup_id: str, database: str, created: str, **extra: t.Any) -> dict[str, t.Any]:
    return {"backup_id": backup_id, "database": database, "created_at": created, "sha256": "0" * 64, "encryption": {}, **extra}


def test_manifests_of_one_database_newest_first(tmp_path: Path) -> None:
    store = store_lib.LocalStore(str(tmp_path))
    ids = {n: f"pay-2025010{n}T000000Z-00000{n}" for n in range(1, 4)}
    other = "pay-x-20250104T000000Z-000004"
    for backup_id, database, created in ((ids[1], "pay", "2025-01-01T00:00:00.000000Z"), (ids[3], "pay", "2025-03-01T00:00:00.000000Z"),
                                         (ids[2], "pay", "2025-02-01T00:00:00.000000Z"), (other, "pay-x", "2025-04-01T00:00:00.000000Z")):
        store.put_text(store_lib.manifest_name(backup_id), json.dumps(manifest_of(backup_id, database, created)))
    (tmp_path / "pay-20250109T000000Z-000009.manifest.json").write_text("{not json")
    assert [m["backup_id"] for m in store.manifests("pay")] == [ids[3], ids[2], ids[1]]
    assert [m["backup_id"] for m in store.manifests("pay-x")] == [other]


def test_manifests_that_name_other_files_are_ignored(tmp_path: Path) -> None:
    """A manifest is listed only when its id is one of the database's and is the id in its own file name."""
    store = store_lib.LocalStore(str(tmp_path))
    planted = {"pay-20250101T000000Z-aaaaaa": manifest_of("../victim", "pay", "2099-01-01T00:00:00.000000Z"),
               "pay-20250102T000000Z-bbbbbb": manifest_of("pay-20250103T000000Z-cccccc", "pay", "2099-01-01T00:00:00.000000Z"),
               "pay-20250104T000000Z-dddddd": [1, 2],
               "pay-20250105T000000Z-eeeeee": manifest_of("pay-20250105T000000Z-eeeeee", "pay", "2025", row_counts={"public.t": None})}
    for name, manifest in planted.items():
        (tmp_path / f"{name}.manifest.json").write_text(json.dumps(manifest))
    assert store.manifests("pay") == []
    with pytest.raises(store_lib.StoreError, match="is not a backup id"):
        store_lib.object_name("../victim")


@pytest.mark.parametrize(("manifest", "problem"), [
    ([], "it is a JSON list, not an object"),
    (None, "it is a JSON null, not an object"),
    (manifest_of("pay-20250101T000000Z-000001", "pay", "x", encryption="AES"), "encryption is not an object"),
    (manifest_of("pay-20250101T000000Z-000001", "pay", "x", row_counts={"public.t": None}), "row_counts is not an object of table names"),
    (manifest_of("pay-20250101T000000Z-000001", "pay", "x", row_counts={"public.t": True}), "row_counts is not an object of table names"),
    (manifest_of("pay-20250101T000000Z-000001", "host=evil dbname=pay", "x"), "database 'host=evil dbname=pay' is not a plain database name"),
    (manifest_of("other-20250101T000000Z-000001", "pay", "x"), "backup_id 'other-20250101T000000Z-000001' is not an id of a backup of pay"),
    (manifest_of("pay-20250101T000000Z-000001", "pay", None), "created_at is not a string"),
    ({**manifest_of("pay-20250101T000000Z-000001", "pay", "x"), "sha256": 5}, "sha256 is not 64 hexadecimal digits"),
], ids=["list", "null", "encryption", "null-count", "bool-count", "conninfo-database", "foreign-id", "created_at", "sha256"])
def test_manifest_structure_is_checked(manifest: t.Any, problem: str) -> None:
    assert any(p.startswith(problem) for p in store_lib.manifest_problems(manifest)), store_lib.manifest_problems(manifest)


class FailingStore(store_lib.LocalStore):
    def put_text(self, name: str, text: str) -> None:
        raise store_lib.StoreError(f"writing {self.location(name)} failed: access denied")


def test_a_manifest_is_removed_again_when_a_later_store_fails(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    with pytest.raises(store_lib.StoreError, match="access denied"):
        store_lib.put_text_everywhere([store_lib.LocalStore(str(first)), FailingStore(str(second))], "pay-x.manifest.json", "{}")
    assert os.listdir(first) == [] and os.listdir(second) == []

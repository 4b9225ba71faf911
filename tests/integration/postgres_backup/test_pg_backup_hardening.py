"""What the modules refuse, and what they never hand out: the password to a host named in a database name, files named
by a manifest, secrets in the environment of client programs, a manifest without its object."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import typing as t
from pathlib import Path

import pytest

from pg_backup_helpers import create_small_db, files_in, run_module, table_contents
from pg_backup_listener import PasswordCatcher
from pg_backup_s3_faults import ManifestRefusingProxy
from pg_backup_servers import PG_BIN, MotoS3, PostgresCluster


@pytest.fixture(scope="module")
def made(cluster: PostgresCluster, collections_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[dict[str, t.Any]]:
    name = "hardening_src"
    create_small_db(cluster, name)
    directory = tmp_path_factory.mktemp("backup")
    key = os.urandom(32).hex()
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": name, "encryption_key": key, "dest_dir": str(directory),
                                                       "verify": False})
    assert result.get("failed") is not True, result.get("msg")
    yield {"db": name, "dir": directory, "key": key, "id": result["backup_id"], "contents": table_contents(cluster, name)}
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def copy_backup(made: dict[str, t.Any], workdir: Path, edit: t.Callable[[dict[str, t.Any]], None]) -> Path:
    """A copy of the backup whose manifest ``edit`` changed."""
    for name in os.listdir(made["dir"]):
        shutil.copy(made["dir"] / name, workdir)
    manifest = workdir / f"{made['id']}.manifest.json"
    content = json.loads(manifest.read_text())
    edit(content)
    manifest.write_text(json.dumps(content))
    return workdir


# --- the restore target can never be read as a connection string ---------------------------------------------------


@pytest.mark.parametrize("where", ["target_db", "manifest"])
def test_restore_never_sends_the_password_to_a_host_named_in_a_database_name(
        cluster: PostgresCluster, collections_dir: Path, made: dict[str, t.Any], workdir: Path, where: str) -> None:
    databases = cluster.databases()
    with PasswordCatcher() as catcher:
        hostile = f"host=127.1 port={catcher.port} dbname=x"
        args = {**cluster.login(), "backup_id": made["id"], "encryption_key": made["key"]}
        if where == "target_db":
            args.update(src_dir=str(made["dir"]), target_db=hostile)
        else:
            args["src_dir"] = str(copy_backup(made, workdir, lambda m: m.update(database=hostile)))
        result = run_module(collections_dir, "pg_restore_backup", args)
    assert catcher.passwords == [], "the password was handed to another server"
    assert catcher.connections == []
    assert result.get("failed") is True
    assert f"{'target_db' if where == 'target_db' else 'database'} {hostile!r} is not a plain database name" in result["msg"]
    assert result["commands"] == [] and result["queries"] == []
    assert cluster.databases() == databases


def test_restore_into_a_path_like_name_is_refused(cluster: PostgresCluster, collections_dir: Path, made: dict[str, t.Any],
                                                  workdir: Path) -> None:
    temp = workdir / "a" / "b" / "tmp"
    temp.mkdir(parents=True)
    databases = cluster.databases()
    result = run_module(collections_dir, "pg_restore_backup", {**cluster.login(), "backup_id": made["id"], "src_dir": str(made["dir"]),
                                                               "encryption_key": made["key"], "target_db": "../../escaped",
                                                               "temp_dir": str(temp)})
    assert result.get("failed") is True and "target_db '../../escaped' is not a plain database name" in result["msg"]
    assert cluster.databases() == databases


# --- a malformed manifest: refused up front, nothing left behind ---------------------------------------------------


def test_manifest_with_a_null_row_count_is_refused_and_leaves_no_database(
        cluster: PostgresCluster, collections_dir: Path, made: dict[str, t.Any], workdir: Path) -> None:
    source = copy_backup(made, workdir, lambda m: m["row_counts"].update({"public.customers": None}))
    databases = cluster.databases()
    result = run_module(collections_dir, "pg_restore_backup", {**cluster.login(), "backup_id": made["id"], "src_dir": str(source),
                                                               "encryption_key": made["key"]})
    assert result.get("failed") is True, result
    assert result["msg"].startswith(f"manifest {source / made['id']}.manifest.json refused: "), result["msg"]
    assert "row_counts is not an object of table names and non-negative integers" in result["msg"], result["msg"]
    assert cluster.databases() == databases, "no *_restore_* database is left"
    assert table_contents(cluster, made["db"]) == made["contents"]


# --- retention deletes files named by backup ids only ----------------------------------------------------------------


def test_retention_never_deletes_a_path_a_manifest_names(cluster: PostgresCluster, small_db: str, workdir: Path, key: str,
                                                         collections_dir: Path) -> None:
    dest = workdir / "dest"
    dest.mkdir()
    victims = [workdir / "victim", workdir / "victim2.manifest.json", workdir / "victim2.dump.zst.enc"]
    for victim in victims:
        victim.write_text("precious")
    planted = {f"{small_db}-20200101T000000Z-aaaaaa": {"object": str(victims[0])},
               f"{small_db}-20200102T000000Z-bbbbbb": {"backup_id": "../victim2"}}
    for backup_id, fields in planted.items():
        manifest = {"backup_id": backup_id, "database": small_db, "created_at": "2020-01-01T00:00:00.000000Z", "sha256": "0" * 64,
                    "encryption": {}, **fields}
        (dest / f"{backup_id}.manifest.json").write_text(json.dumps(manifest))
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": small_db, "encryption_key": key, "dest_dir": str(dest),
                                                       "verify": False, "keep": 1})
    assert result.get("failed") is not True, result.get("msg")
    for victim in victims:
        assert victim.read_text() == "precious", f"{victim} was deleted"
    for deleted in result["deleted"]:
        assert all(Path(location).parent == dest for location in deleted["locations"])


# --- client programs get no secret in their environment -------------------------------------------------------------


RECORDER = """#!{python}
import json, os, stat, sys
REAL = {real!r}
passfile = os.environ.get("PGPASSFILE")
seen = {{"argv": sys.argv, "env": dict(os.environ), "temp_dir": sorted(os.listdir({temp!r})) if {temp!r} else None,
        "passfile": None if passfile is None else
                    {{"mode": stat.S_IMODE(os.stat(passfile).st_mode), "text": open(passfile).read(), "path": passfile}}}}
with open({record!r}, "a") as handle:
    handle.write(json.dumps(seen) + "\\n")
os.execv(REAL, [REAL] + sys.argv[1:])
"""


def recording_bin_dir(workdir: Path, temp: Path | None) -> tuple[Path, Path]:
    """pg_dump and pg_restore that record their argv, environment and password file, then run the real program."""
    bin_dir, record = workdir / "bin", workdir / "seen.jsonl"
    bin_dir.mkdir()
    for program in ("pg_dump", "pg_restore"):
        path = bin_dir / program
        path.write_text(RECORDER.format(python=sys.executable, real=str(PG_BIN / program), record=str(record),
                                        temp=str(temp) if temp else ""))
        path.chmod(0o755)
    return bin_dir, record


@pytest.mark.parametrize("verify_first", [False, True], ids=["streamed", "verify_first"])
def test_client_programs_get_a_minimal_environment_and_a_private_passfile(
        cluster: PostgresCluster, small_db: str, workdir: Path, key: str, collections_dir: Path, verify_first: bool) -> None:
    temp = workdir / "tmp"
    temp.mkdir()
    bin_dir, record = recording_bin_dir(workdir, temp)
    secrets_in_env = {"ENCRYPTION_KEY": key, "AWS_ACCESS_KEY_ID": "AKIAHARDENINGTEST", "AWS_SECRET_ACCESS_KEY": "aws-secret-hardening",
                      "PGPASSWORD": cluster.password}
    dest = workdir / "dest"
    backup = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": small_db, "dest_dir": str(dest), "pg_bin_dir": str(bin_dir)},
                        env=secrets_in_env)
    assert backup.get("failed") is not True, backup.get("msg")
    restore = run_module(collections_dir, "pg_restore_backup", {**cluster.login(), "backup_id": backup["backup_id"], "src_dir": str(dest),
                                                                "pg_bin_dir": str(bin_dir), "temp_dir": str(temp), "verify_first": verify_first},
                         env=secrets_in_env)
    assert restore.get("failed") is not True, restore.get("msg")

    seen = [json.loads(line) for line in record.read_text().splitlines()]
    programs = [os.path.basename(s["argv"][0]) for s in seen]
    # --version of each (backup and restore), schema-only dump, dump, verifying parse, restore
    assert programs.count("pg_dump") == 3 and programs.count("pg_restore") == 4, programs
    for run in seen:
        env = run["env"]
        assert not {"ENCRYPTION_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"} & set(env), sorted(env)
        for value in [*secrets_in_env.values(), bytes.fromhex(key).hex()]:
            assert all(value not in v for v in env.values())
            assert all(value not in a for a in run["argv"])
        if "--file=/dev/null" in run["argv"] or "--version" in run["argv"]:
            continue  # these do not connect
        assert run["passfile"]["mode"] == 0o600
        assert run["passfile"]["text"] == f"127.0.0.1:{cluster.port}:*:{cluster.user}:{cluster.password}\n"
        assert not os.path.exists(run["passfile"]["path"]), "the password file is removed at the end"
        assert any(a.startswith("--dbname=dbname='") for a in run["argv"])
    restoring = [r for r in seen if os.path.basename(r["argv"][0]) == "pg_restore" and any(a.startswith("--dbname") for a in r["argv"])]
    assert len(restoring) == 1
    if verify_first:  # the checked backup waits in temp_dir, under the fixed prefix
        assert restoring[0]["temp_dir"] and all(n.startswith("payments-restore-") for n in restoring[0]["temp_dir"])
    else:  # streamed: no plaintext on disk at any time
        assert restoring[0]["temp_dir"] == []
    assert restore["verification"]["streamed"] is not verify_first
    assert files_in(temp) == []


# --- a failed multi-store backup leaves no manifest -----------------------------------------------------------------


def test_manifest_written_to_one_store_is_removed_when_another_fails(
        cluster: PostgresCluster, small_db: str, workdir: Path, key: str, s3_server: MotoS3, bucket: str, collections_dir: Path) -> None:
    dest = workdir / "dest"
    with ManifestRefusingProxy(s3_server.endpoint) as proxy:
        result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": small_db, "encryption_key": key, "dest_dir": str(dest),
                                                           "s3_bucket": bucket, "s3_endpoint_url": proxy.endpoint, "s3_region": "us-east-1",
                                                           "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                                                           "verify": False})
    assert proxy.refused, "the S3 manifest write was refused"
    assert result.get("failed") is True and result["msg"].startswith("writing the manifest failed, no backup was kept"), result["msg"]
    assert files_in(dest) == [], "no manifest is left without its object"
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", []) == []
    assert stat.S_ISDIR(dest.stat().st_mode)


# --- manifests and objects are authenticated: one backup cannot be passed off as another --------------------------------


def test_a_backup_cannot_be_passed_off_as_another(cluster: PostgresCluster, small_db: str, workdir: Path, key: str,
                                                  collections_dir: Path) -> None:
    dest = workdir / "dest"
    older = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": small_db, "encryption_key": key, "dest_dir": str(dest),
                                                      "verify": False})
    cluster.execute("DELETE FROM customers WHERE id > 1000", dbname=small_db)
    newer = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": small_db, "encryption_key": key, "dest_dir": str(dest),
                                                      "verify": False})
    a_id, b_id = older["backup_id"], newer["backup_id"]
    restore_args = {**cluster.login(), "src_dir": str(dest), "encryption_key": key, "target_db": small_db}
    b_object, b_path = dest / f"{b_id}.dump.zst.enc", dest / f"{b_id}.manifest.json"
    b_bytes, b_manifest = b_object.read_bytes(), json.loads(b_path.read_text())
    a_manifest = json.loads((dest / f"{a_id}.manifest.json").read_text())
    databases = cluster.databases()

    # A's object copied over B's, and A's sha256, sizes and row counts written into B's manifest
    shutil.copy(dest / f"{a_id}.dump.zst.enc", b_object)
    b_path.write_text(json.dumps({**b_manifest, **{k: a_manifest[k] for k in ("sha256", "sizes", "row_counts")}}))
    swapped = run_module(collections_dir, "pg_restore_backup", {**restore_args, "backup_id": b_id})
    assert swapped.get("failed") is True, "backup A was restored as backup B"
    assert swapped["msg"].startswith(f"backup {b_id} refused: its manifest failed authentication"), swapped["msg"]

    # the object alone copied: its header binds it to A
    b_path.write_text(json.dumps(b_manifest))
    misplaced = run_module(collections_dir, "pg_restore_backup", {**restore_args, "backup_id": b_id})
    assert misplaced.get("failed") is True and misplaced["integrity_failure"] == "misplaced", misplaced["msg"]
    assert "the object was made for another backup" in misplaced["msg"]
    assert cluster.databases() == databases

    # a planted manifest with a later date does not become "latest"
    b_object.write_bytes(b_bytes)
    planted = {**a_manifest, "backup_id": f"{small_db}-20990101T000000Z-000000", "created_at": "2099-01-01T00:00:00.000000Z"}
    (dest / f"{planted['backup_id']}.manifest.json").write_text(json.dumps(planted))
    shutil.copy(dest / f"{a_id}.dump.zst.enc", dest / f"{planted['backup_id']}.dump.zst.enc")
    latest = run_module(collections_dir, "pg_restore_backup", {**restore_args, "backup_id": "latest"}, "--check")
    assert latest.get("failed") is not True and latest["backup_id"] == b_id, latest.get("msg")

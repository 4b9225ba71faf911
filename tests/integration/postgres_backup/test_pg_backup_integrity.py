"""Damaged or wrongly keyed backups are refused with distinct messages before any database is touched;
and the archive parse of the verification catches truncation that ``pg_restore --list`` lets through."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from pg_backup_helpers import files_in, records, run_module, sign_manifest, table_contents
from pg_backup_servers import PG_BIN, PostgresCluster


@pytest.fixture(scope="module")
def made_backup(cluster: PostgresCluster, collections_dir: Path, payments_template: str,
                tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[dict[str, t.Any]]:
    """One backup of a database, shared by the tests below (each damages its own copy)."""
    name = "integrity_src"
    cluster.execute(f'CREATE DATABASE "{name}" TEMPLATE "{payments_template}"')
    directory = tmp_path_factory.mktemp("backup")
    key = os.urandom(32).hex()
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": name, "encryption_key": key, "dest_dir": str(directory)})
    assert result.get("failed") is not True, result.get("msg")
    yield {"db": name, "dir": directory, "key": key, "id": result["backup_id"], "contents": table_contents(cluster, name)}
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def damaged_copy(made: dict[str, t.Any], workdir: Path, damage: t.Callable[[bytes], bytes]) -> Path:
    name = f"{made['id']}.dump.zst.enc"
    shutil.copy(made["dir"] / f"{made['id']}.manifest.json", workdir)
    data = (made["dir"] / name).read_bytes()
    damaged = damage(data)
    assert damaged != data
    (workdir / name).write_bytes(damaged)
    return workdir


def restore(cluster: PostgresCluster, collections_dir: Path, made: dict[str, t.Any], source: Path, key: str | None = None,
            *flags: str, **options: t.Any) -> dict[str, t.Any]:
    """Restore with the decrypted temporary file (if any) in ``<source>/tmp``, which must be empty again afterwards."""
    temp = source / "tmp"
    temp.mkdir(exist_ok=True)
    result = run_module(collections_dir, "pg_restore_backup", {**cluster.login(), "backup_id": made["id"], "src_dir": str(source),
                                                               "target_db": made["db"], "encryption_key": key or made["key"],
                                                               "temp_dir": str(temp), **options}, *flags)
    assert files_in(temp) == [], "the decrypted temporary file is removed"
    temp.rmdir()
    return result


def flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]


def cut_at_chunk_boundary(data: bytes) -> bytes:
    offset, size = records(data)[2]
    return data[:offset + size]  # chunks 0..2 intact, the rest gone


def cut_mid_chunk(data: bytes) -> bytes:
    offset, size = records(data)[2]
    return data[:offset + size // 2]


def swap_chunks(data: bytes) -> bytes:
    (first, first_size), (second, second_size) = records(data)[1:3]
    return data[:first] + data[second:second + second_size] + data[first:first + first_size] + data[second + second_size:]


def duplicate_chunk(data: bytes) -> bytes:
    offset, size = records(data)[1]
    return data[:offset + size] + data[offset:offset + size] + data[offset + size:]


CASES = [
    ("tampered", flip_middle_byte, "failed authentication: the backup was modified or is corrupt"),
    ("truncated", cut_at_chunk_boundary, "the backup is truncated: it ends after chunk 2, which is intact but is not the last chunk"),
    ("truncated", cut_mid_chunk, "the backup is truncated in the middle of chunk 2 ("),
    ("reordered", swap_chunks, "chunk 2 of the backup was found at position 1: chunks were reordered, duplicated or removed"),
    ("reordered", duplicate_chunk, "chunk 1 of the backup was found at position 2"),
]


def restores_into_a_database(result: dict[str, t.Any]) -> list[list[str]]:
    return [c for c in result["commands"] if c[0].endswith("pg_restore") and any(a.startswith("--dbname") for a in c)]


@pytest.mark.parametrize(("kind", "damage", "message"), CASES, ids=[case[1].__name__ for case in CASES])
@pytest.mark.parametrize("mode", ["verify_first", "check"])
def test_damaged_backup_is_refused_before_any_database_is_touched(
        cluster: PostgresCluster, collections_dir: Path, made_backup: dict[str, t.Any], workdir: Path,
        kind: str, damage: t.Callable[[bytes], bytes], message: str, mode: str) -> None:
    databases = cluster.databases()
    source = damaged_copy(made_backup, workdir, damage)
    if mode == "check":
        result = restore(cluster, collections_dir, made_backup, source, None, "--check")
    else:
        result = restore(cluster, collections_dir, made_backup, source, None, verify_first=True)
    assert result.get("failed") is True
    assert message in result["msg"], result["msg"]
    assert result["msg"].startswith(f"backup {made_backup['id']} refused: ") and "no database was touched" in result["msg"]
    assert result["integrity_failure"] == kind
    assert cluster.databases() == databases
    assert table_contents(cluster, made_backup["db"]) == made_backup["contents"]
    assert (source / f"{made_backup['id']}.dump.zst.enc").exists(), "the damaged copy is left for inspection"
    assert not restores_into_a_database(result)


@pytest.mark.parametrize(("kind", "damage", "message"), CASES, ids=[case[1].__name__ for case in CASES])
def test_damage_found_while_streaming_drops_the_new_database_and_leaves_the_target(
        cluster: PostgresCluster, collections_dir: Path, made_backup: dict[str, t.Any], workdir: Path,
        kind: str, damage: t.Callable[[bytes], bytes], message: str) -> None:
    """The default streams authenticated chunks into pg_restore: the damage is found part-way through, after the new
    database received the chunks before it; that database is dropped and the target keeps every row."""
    databases = cluster.databases()
    source = damaged_copy(made_backup, workdir, damage)
    result = restore(cluster, collections_dir, made_backup, source)
    assert result.get("failed") is True
    assert message in result["msg"], result["msg"]
    assert result["msg"].startswith(f"backup {made_backup['id']} refused: "), result["msg"]
    restored_via = f"{made_backup['db']}_restore_"
    assert f", which this run created, was dropped; {made_backup['db']} is untouched" in result["msg"], result["msg"]
    assert restored_via in result["msg"]
    assert result["integrity_failure"] == kind
    assert len(restores_into_a_database(result)) == 1, "pg_restore had started on the new database"
    assert cluster.databases() == databases
    assert table_contents(cluster, made_backup["db"]) == made_backup["contents"]
    assert (source / f"{made_backup['id']}.dump.zst.enc").exists(), "the damaged copy is left for inspection"


def test_wrong_key_is_named_as_such(cluster: PostgresCluster, collections_dir: Path, made_backup: dict[str, t.Any]) -> None:
    databases = cluster.databases()
    wrong = os.urandom(32).hex()
    result = restore(cluster, collections_dir, made_backup, made_backup["dir"], wrong)
    assert result.get("failed") is True
    assert "wrong key: backup" in result["msg"] and "but the given key has id" in result["msg"]
    assert result["integrity_failure"] == "wrong_key"
    assert wrong not in str(result) and made_backup["key"] not in str(result)
    assert cluster.databases() == databases


def test_manifest_that_does_not_match_the_object_is_refused(cluster: PostgresCluster, collections_dir: Path,
                                                            made_backup: dict[str, t.Any], workdir: Path) -> None:
    for name in os.listdir(made_backup["dir"]):
        shutil.copy(made_backup["dir"] / name, workdir)
    manifest = workdir / f"{made_backup['id']}.manifest.json"
    content = json.loads(manifest.read_text())
    other = ("1" if content["sha256"][0] == "0" else "0") + content["sha256"][1:]
    manifest.write_text(json.dumps({**content, "sha256": other}))
    databases = cluster.databases()
    result = restore(cluster, collections_dir, made_backup, workdir)
    assert result.get("failed") is True
    assert result["msg"].startswith(f"backup {made_backup['id']} refused: its manifest failed authentication"), result["msg"]
    # written by someone holding the key, the wrong sha256 is still caught
    manifest.write_text(json.dumps(sign_manifest({**content, "sha256": other}, made_backup["key"])))
    result = restore(cluster, collections_dir, made_backup, workdir)
    assert result.get("failed") is True
    assert f"but the manifest records {other}" in result["msg"]
    assert cluster.databases() == databases


# --- the verification method catches what pg_restore --list does not ---------------------------------------


def test_pg_restore_list_passes_a_truncated_archive_but_a_full_parse_fails(cluster: PostgresCluster, database: str,
                                                                           workdir: Path) -> None:
    """The reason pg_backup verifies with ``pg_restore --file=/dev/null`` reading the archive from a pipe."""
    env = {**os.environ, "PGPASSWORD": cluster.password}
    create = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", cluster.user]
    archive = subprocess.run([str(PG_BIN / "pg_dump"), *create, "-Fc", "-Z0", "-d", database], env=env,
                             capture_output=True, check=True).stdout
    truncated = archive[:len(archive) // 2]
    (workdir / "truncated.dump").write_bytes(truncated)
    listing = subprocess.run([str(PG_BIN / "pg_restore"), "--list", str(workdir / "truncated.dump")], capture_output=True, check=False)
    assert listing.returncode == 0, "pg_restore --list reads only the table of contents"
    full = subprocess.run([str(PG_BIN / "pg_restore"), "--file=/dev/null"], input=truncated, capture_output=True, check=False)
    assert full.returncode != 0
    intact = subprocess.run([str(PG_BIN / "pg_restore"), "--file=/dev/null"], input=archive, capture_output=True, check=False)
    assert intact.returncode == 0


def test_backup_of_a_truncated_dump_fails_verification_and_keeps_nothing(
        cluster: PostgresCluster, database: str, workdir: Path, key: str, collections_dir: Path) -> None:
    """A pg_dump that cuts its archive short but exits 0: only the full parse of the verification can notice."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    (bin_dir / "pg_restore").symlink_to(PG_BIN / "pg_restore")
    wrapper = bin_dir / "pg_dump"
    wrapper.write_text(f"""#!{sys.executable}
import os, subprocess, sys
REAL = {str(PG_BIN / 'pg_dump')!r}
if "--format=custom" not in sys.argv:
    os.execv(REAL, [REAL] + sys.argv[1:])
data = subprocess.run([REAL] + sys.argv[1:], stdout=subprocess.PIPE, check=True).stdout
sys.stdout.buffer.write(data[:len(data) // 2])
""")
    wrapper.chmod(0o755)
    dest = workdir / "dest"
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, "dest_dir": str(dest),
                                                       "pg_bin_dir": str(bin_dir)})
    assert result.get("failed") is True
    assert result["msg"].startswith("verification failed, no backup was kept: pg_restore exited with status 1"), result["msg"]
    assert files_in(dest) == []
    assert result["deleted_unverified"] == [str(dest / f"{result['backup_id']}.dump.zst.enc")]


# --- a restore that fails after the new database was created: dropped again, the target untouched -------------------


def test_restore_whose_row_counts_differ_is_dropped(cluster: PostgresCluster, collections_dir: Path, made_backup: dict[str, t.Any],
                                                    workdir: Path) -> None:
    for name in os.listdir(made_backup["dir"]):
        shutil.copy(made_backup["dir"] / name, workdir)
    manifest = workdir / f"{made_backup['id']}.manifest.json"
    content = json.loads(manifest.read_text())
    content["row_counts"]["public.customers"] = 2001
    manifest.write_text(json.dumps(sign_manifest(content, made_backup["key"])))  # as someone holding the key could
    databases = cluster.databases()
    result = restore(cluster, collections_dir, made_backup, workdir)
    assert result.get("failed") is True
    assert "the restored data differs from the backup: table public.customers has 2000 rows instead of 2001" in result["msg"]
    assert "was dropped" in result["msg"] and f"{made_backup['db']} is untouched" in result["msg"]
    assert cluster.databases() == databases
    assert table_contents(cluster, made_backup["db"]) == made_backup["contents"]


def test_pg_restore_failing_midway_drops_the_new_database(cluster: PostgresCluster, collections_dir: Path,
                                                          made_backup: dict[str, t.Any], workdir: Path) -> None:
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    (bin_dir / "pg_restore").write_text(f"""#!{sys.executable}
import os, sys
REAL = {str(PG_BIN / 'pg_restore')!r}
if "--version" in sys.argv:
    os.execv(REAL, [REAL] + sys.argv[1:])
sys.stdin.buffer.read(3 * 1024 * 1024)
sys.stderr.write("pg_restore: error: could not write to the server (simulated)\\n")
sys.exit(1)
""")
    (bin_dir / "pg_restore").chmod(0o755)
    databases = cluster.databases()
    result = run_module(collections_dir, "pg_restore_backup", {**cluster.login(), "backup_id": made_backup["id"], "src_dir": str(made_backup["dir"]),
                                                               "encryption_key": made_backup["key"], "pg_bin_dir": str(bin_dir)})
    assert result.get("failed") is True
    assert "pg_restore exited with status 1: pg_restore: error: could not write to the server (simulated)" in result["msg"]
    assert "was dropped" in result["msg"]
    assert cluster.databases() == databases
    assert table_contents(cluster, made_backup["db"]) == made_backup["contents"]

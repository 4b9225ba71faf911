"""pg_backup failing: nothing that looks like a backup is left, and the message says what went wrong."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest

from pg_backup_helpers import files_in, run_module
from loopback_ports import free_port
from pg_backup_servers import PG_BIN, MotoS3, PostgresCluster

KILL_AFTER = 16 * 1024 * 1024  # dump bytes: several 1 MiB chunks were written when pg_dump dies


def fake_bin_dir(workdir: Path, pg_dump_body: str) -> Path:
    """A pg_bin_dir with the real pg_restore and a pg_dump wrapper; every call of the wrapper is logged in ``calls``."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    (bin_dir / "pg_restore").symlink_to(PG_BIN / "pg_restore")
    wrapper = bin_dir / "pg_dump"
    wrapper.write_text(f"""#!{sys.executable}
import os, signal, subprocess, sys, time
REAL = {str(PG_BIN / 'pg_dump')!r}
with open({str(bin_dir / 'calls')!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
{pg_dump_body}
""")
    wrapper.chmod(0o755)
    return bin_dir


def dies_after(limit: int) -> str:
    """pg_dump wrapper body: stream the real dump until ``limit`` bytes, then die by SIGKILL (and kill the real one)."""
    return f"""
if "--format=custom" not in sys.argv:
    os.execv(REAL, [REAL] + sys.argv[1:])
child = subprocess.Popen([REAL] + sys.argv[1:], stdout=subprocess.PIPE)
sent = 0
while sent < {limit}:
    block = child.stdout.read(65536)
    if not block:
        break
    sys.stdout.buffer.write(block)
    sent += len(block)
sys.stdout.buffer.flush()
with open(os.path.join(os.path.dirname(sys.argv[0]), "sent"), "w") as marker:
    marker.write(str(sent))
time.sleep(1.5)  # let the module upload what it has, so that the abort has something to remove
child.kill()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_pg_dump_dying_midway_leaves_no_local_file(cluster: PostgresCluster, database: str, workdir: Path, key: str,
                                                   collections_dir: Path) -> None:
    bin_dir = fake_bin_dir(workdir, dies_after(KILL_AFTER))
    dest = workdir / "dest"
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key,
                                                       "dest_dir": str(dest), "pg_bin_dir": str(bin_dir)})
    assert result.get("failed") is True
    assert result["msg"] == "the backup failed, no backup was kept: pg_dump was killed by signal 9 without a message"
    assert int((bin_dir / "sent").read_text()) == KILL_AFTER, "the dump was streaming when it died"
    assert files_in(dest) == [], "neither the object, nor its temporary file, nor a manifest"
    assert result["aborted_uploads"] == [str(dest / f"{result['backup_id']}.dump.zst.enc")]


def test_pg_dump_dying_midway_aborts_the_s3_upload(cluster: PostgresCluster, database: str, workdir: Path, key: str,
                                                   s3_server: MotoS3, bucket: str, collections_dir: Path) -> None:
    # zstd holds back up to a few MiB: dump enough incompressible data that, compressed, parts are uploaded before the death
    cluster.execute("INSERT INTO receipts SELECT r, (SELECT decode(string_agg(md5(random()::text || r || i), ''), 'hex') "
                    "FROM generate_series(1, 1024) i) FROM generate_series(1001, 3000) r", dbname=database)
    bin_dir = fake_bin_dir(workdir, dies_after(3 * KILL_AFTER))
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, "s3_bucket": bucket,
                                                       "s3_endpoint_url": s3_server.endpoint, "s3_region": "us-east-1",
                                                       "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                                                       "s3_part_size_mb": 5, "pg_bin_dir": str(bin_dir)})
    assert result.get("failed") is True
    assert "pg_dump was killed by signal 9" in result["msg"]
    assert int((bin_dir / "sent").read_text()) == 3 * KILL_AFTER
    location = f"s3://{bucket}/{result['backup_id']}.dump.zst.enc"
    assert result["uploaded_parts"][location] >= 1, "a part was uploaded before the failure"
    client = s3_server.client()
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], "the multipart upload was aborted"


def test_unreachable_s3_fails_before_anything_runs(cluster: PostgresCluster, database: str, workdir: Path, key: str,
                                                   collections_dir: Path) -> None:
    bin_dir = fake_bin_dir(workdir, "os.execv(REAL, [REAL] + sys.argv[1:])")
    endpoint = f"http://127.0.0.1:{free_port()}"
    dest = workdir / "dest"
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, "dest_dir": str(dest),
                                                       "s3_bucket": "backups", "s3_endpoint_url": endpoint, "s3_region": "us-east-1",
                                                       "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                                                       "pg_bin_dir": str(bin_dir)})
    assert result.get("failed") is True
    assert result["msg"].startswith(f"S3 endpoint {endpoint} unreachable: "), result["msg"]
    assert result["commands"] == []
    assert (bin_dir / "calls").read_text().split("\n")[:-1] == ["--version"], "only the version was asked, nothing dumped"
    assert files_in(dest) == []


def test_missing_bucket_is_named(cluster: PostgresCluster, database: str, key: str, s3_server: MotoS3, collections_dir: Path) -> None:
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, "s3_bucket": "no-such-bucket",
                                                       "s3_endpoint_url": s3_server.endpoint, "s3_region": "us-east-1",
                                                       "aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
    assert result.get("failed") is True
    assert result["msg"] == f"S3 bucket no-such-bucket does not exist at {s3_server.endpoint}"
    assert result["commands"] == []


@pytest.mark.parametrize(("key_value", "message"), [
    (None, "encryption_key is missing: set the option or the ENCRYPTION_KEY environment variable"),
    ("", "encryption_key is missing"),
    ("ab" * 31, "encryption_key must be 64 hexadecimal characters (32 bytes) but has 62 characters"),
    ("zz" + "ab" * 31, "encryption_key must be 64 hexadecimal characters (32 bytes) but contains characters that are not hexadecimal"),
], ids=["absent", "empty", "short", "not-hex"])
def test_missing_or_malformed_key_fails_before_anything_runs(
        cluster: PostgresCluster, database: str, workdir: Path, collections_dir: Path, key_value: str | None, message: str) -> None:
    bin_dir = fake_bin_dir(workdir, "os.execv(REAL, [REAL] + sys.argv[1:])")
    dest = workdir / "dest"
    args = {**cluster.login(), "db": database, "dest_dir": str(dest), "pg_bin_dir": str(bin_dir)}
    env = {}
    if key_value is not None:
        env["ENCRYPTION_KEY"] = key_value  # the environment fallback
    result = run_module(collections_dir, "pg_backup", args, env=env)
    assert result.get("failed") is True
    assert result["msg"].startswith(message), result["msg"]
    if key_value:
        assert key_value not in result["msg"]
    assert result["commands"] == [] and result["queries"] == []
    assert not (bin_dir / "calls").exists(), "no client program was started"
    assert not dest.exists()


def test_key_from_the_environment_works(cluster: PostgresCluster, database: str, workdir: Path, key: str, collections_dir: Path) -> None:
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "dest_dir": str(workdir)},
                        env={"ENCRYPTION_KEY": key})
    assert result.get("failed") is not True, result.get("msg")
    assert result["manifest"]["encryption"]["key_id"] and key not in str(result)


def test_pg_dump_older_than_the_server_fails_before_dumping(cluster: PostgresCluster, database: str, workdir: Path, key: str,
                                                            collections_dir: Path) -> None:
    bin_dir = fake_bin_dir(workdir, """
if sys.argv[1:] == ["--version"]:
    print("pg_dump (PostgreSQL) 14.9")
    sys.exit(0)
os.execv(REAL, [REAL] + sys.argv[1:])
""")
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key,
                                                       "dest_dir": str(workdir / "dest"), "pg_bin_dir": str(bin_dir)})
    assert result.get("failed") is True
    assert f"{bin_dir}/pg_dump is version 14.9, older than the server (15." in result["msg"]
    assert "install the PostgreSQL 15 client programs or set pg_bin_dir" in result["msg"]
    assert result["commands"] == []
    assert (bin_dir / "calls").read_text() == "--version\n"
    assert files_in(workdir / "dest") == []


def test_pg_dump_errors_are_reported_without_the_password(cluster: PostgresCluster, database: str, workdir: Path, key: str,
                                                          collections_dir: Path) -> None:
    """The password reaches pg_dump in its password file (the wrapper echoes it, as a careless error message might) and is masked."""
    bin_dir = fake_bin_dir(workdir, """
if "--version" in sys.argv or "--schema-only" in sys.argv:
    os.execv(REAL, [REAL] + sys.argv[1:])
sys.stderr.write("pg_dump: error: connection failed for password " + open(os.environ["PGPASSFILE"]).read().split(":")[-1])
sys.exit(1)
""")
    dest = workdir / "dest"
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, "dest_dir": str(dest),
                                                       "pg_bin_dir": str(bin_dir)})
    assert result.get("failed") is True
    assert "pg_dump exited with status 1: pg_dump: error: connection failed for password ********" in result["msg"]
    assert cluster.password not in str(result)
    assert cluster.password not in (bin_dir / "calls").read_text(), "never on the command line"
    assert files_in(dest) == []


def test_wrong_password_fails_clearly(cluster: PostgresCluster, database: str, workdir: Path, key: str, collections_dir: Path) -> None:
    result = run_module(collections_dir, "pg_backup", {**cluster.login(), "login_password": "not-the-password", "db": database,
                                                       "encryption_key": key, "dest_dir": str(workdir / "dest")})
    assert result.get("failed") is True
    assert f"cannot connect to database {database!r} on 127.0.0.1:{cluster.port} as postgres" in result["msg"]
    assert "password authentication failed" in result["msg"]
    assert result["commands"] == []


def test_disk_error_midway_removes_the_file_and_aborts_the_s3_upload(
        cluster: PostgresCluster, database: str, workdir: Path, key: str, s3_server: MotoS3, bucket: str, collections_dir: Path) -> None:
    """A file size limit on the module (as a full disk would) makes the local write fail after a few MiB."""
    dest = workdir / "dest"
    limit = 4 * 1024 * 1024

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = {**cluster.login(), "db": database, "encryption_key": key, "dest_dir": str(dest), "s3_bucket": bucket,
            "s3_endpoint_url": s3_server.endpoint, "s3_region": "us-east-1", "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing", "s3_part_size_mb": 5}
    result = run_module(collections_dir, "pg_backup", args, preexec_fn=limit_file_size)
    assert result.get("failed") is True
    assert "the backup failed, no backup was kept: writing " in result["msg"] and "File too large" in result["msg"]
    assert files_in(dest) == []
    client = s3_server.client()
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert sorted(result["aborted_uploads"]) == sorted([str(dest / f"{result['backup_id']}.dump.zst.enc"),
                                                        f"s3://{bucket}/{result['backup_id']}.dump.zst.enc"])


def test_s3_going_away_midway_fails_clearly_and_leaves_no_local_file(
        cluster: PostgresCluster, database: str, workdir: Path, key: str, collections_dir: Path) -> None:
    doomed = MotoS3()
    doomed.start()
    try:
        doomed.client().create_bucket(Bucket="doomed")
        assert doomed.process is not None
        # the wrapper streams the dump and kills the S3 server once 8 MiB went out
        bin_dir = fake_bin_dir(workdir, f"""
if "--format=custom" not in sys.argv:
    os.execv(REAL, [REAL] + sys.argv[1:])
child = subprocess.Popen([REAL] + sys.argv[1:], stdout=subprocess.PIPE)
sent = 0
while block := child.stdout.read(65536):
    if sent < 8 * 1024 * 1024 <= sent + len(block):
        os.kill({doomed.process.pid}, signal.SIGKILL)
    sys.stdout.buffer.write(block)
    sent += len(block)
sys.exit(child.wait())
""")
        dest = workdir / "dest"
        result = run_module(collections_dir, "pg_backup", {**cluster.login(), "db": database, "encryption_key": key, "dest_dir": str(dest),
                                                           "s3_bucket": "doomed", "s3_endpoint_url": doomed.endpoint, "s3_region": "us-east-1",
                                                           "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                                                           "s3_part_size_mb": 5, "pg_bin_dir": str(bin_dir)})
    finally:
        doomed.stop()
    assert result.get("failed") is True
    assert f"S3 endpoint {doomed.endpoint} unreachable" in result["msg"], result["msg"]
    assert files_in(dest) == []

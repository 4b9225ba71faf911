"""pgbackrest_restore, a rollback's way back: the whole cluster returns to the deploy's restore point and is swapped in;
bad inputs are refused before any data moves, and a failure after the live stop puts the original back. (The roles'
restore from the journal: test_pgbackrest_roles.py, on the cluster its roles set up.)"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import typing as t
from pathlib import Path

import pytest

from pgbackrest_world import OS_USER, Cluster, Repo, free_port, run_module
from pgbackrest_world import make_world
from pitr_world import Deployed, EtcCluster, archive_and_deploy, marked_rows, restore_args, start_command


@pytest.fixture
def deployed(collections_dir: Path) -> t.Iterator[Deployed]:
    base, cluster, repo = make_world("pgbackrest-pitr-")
    try:
        yield archive_and_deploy(collections_dir, cluster, repo)
    finally:
        for data in base.glob("data*"):
            if (data / "postmaster.pid").exists():
                Cluster(base, name=data.name, port=cluster.port).stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def untouched(collections_dir: Path) -> t.Iterator[Deployed]:
    """One deployed cluster for the refusals: none of them may change it."""
    base, cluster, repo = make_world("pgbackrest-refuse-")
    try:
        yield archive_and_deploy(collections_dir, cluster, repo)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def paths(world: Deployed) -> tuple[Path, Path]:
    data, point = world.cluster.data, world.journal["restore_point"]
    return data.with_name(f"{data.name}.restored-{point}"), data.with_name(f"{data.name}.replaced-{point}")


def test_rollback_restores_the_restore_point_and_keeps_the_replaced_cluster(deployed: Deployed, collections_dir: Path) -> None:
    cluster, repo, marker = deployed.cluster, deployed.repo, deployed.marker
    restored, kept = paths(deployed)
    both = marked_rows(cluster, marker)
    assert [row[0] for row in both] == ["900001", "900002"]
    args = restore_args(deployed, scratch_port=free_port())

    # check mode runs every check and moves nothing
    check = run_module(collections_dir, "pgbackrest_restore", args, check_mode=True)
    assert check.get("failed") is not True, check.get("msg")
    assert check["changed"] is True and check["swapped"] is False and check["backup_set"] == deployed.journal["backup_label"]
    assert {c["purpose"] for c in check["commands"] if c.get("skipped")} >= {"restore the backup into restore_path", "stop the live cluster"}
    assert not restored.exists() and not kept.exists()
    assert marked_rows(cluster, marker) == both

    # a start that fails once (after the live stop and the renames) puts the original back and starts it
    flag = cluster.base / "start-failed-once"
    again = " ".join(start_command(cluster))
    failing = ["sh", "-c", f"if [ -e {flag} ]; then exec {again}; fi; touch {flag}; echo simulated start failure; exit 3"]
    failed = run_module(collections_dir, "pgbackrest_restore", {**args, "start_command": failing})
    assert failed["failed"] is True and failed["put_back"] is True, failed["msg"]
    assert "start_command failed" in failed["msg"] and "is back" in failed["msg"] and "serves" in failed["msg"]
    assert marked_rows(cluster, marker) == both, "the original cluster serves again, with the rows after the restore point"
    assert not kept.exists() and Path(f"{restored}.failed").is_dir()
    shutil.rmtree(f"{restored}.failed")

    result = run_module(collections_dir, "pgbackrest_restore", {**args, "backup_after": "full"})
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True and result["swapped"] is True and result["put_back"] is False
    assert marked_rows(cluster, marker) == [["900001", f"before {marker}"]], "exactly the rows written before the restore point"
    assert cluster.sql("SELECT count(*) FROM payments WHERE note = 'before'") == [["20000"]]
    assert result["replay_lsn"] == deployed.journal["restore_point_lsn"]
    assert cluster.sql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)") == [[f"{result['timeline']:08X}"]]
    assert result["timeline"] > int(deployed.journal["wal_segment"][:8], 16)
    assert 0 < result["downtime_seconds"] <= result["timings"]["swap"] <= result["timings"]["total"]
    assert result["kept_path"] == str(kept) and not (kept / "postmaster.pid").exists() and not restored.exists()
    assert (kept / "PG_VERSION").is_file()

    # the swapped-in cluster archives again: check passes, the new timeline's history is in the repository, and backups work
    assert cluster.sql("SHOW archive_mode") == [["on"]]
    assert repo.pgbackrest("check").returncode == 0
    history = f"{result['timeline']:08X}.history"
    assert any(p.name == history for p in (repo.path / "archive" / repo.stanza).rglob("*.history"))
    backups = repo.backups()
    assert backups[-1]["type"] == "full" and backups[-1]["archive"]["start"].startswith(f"{result['timeline']:08X}")
    incr = repo.pgbackrest("--type=incr", "backup")
    assert incr.returncode == 0, incr.stderr
    assert cluster.sql("SELECT failed_count FROM pg_stat_archiver") == [["0"]]
    assert cipher_free(result, repo)

    # run again, it sees the restore done and changes nothing
    rerun = run_module(collections_dir, "pgbackrest_restore", args)
    assert rerun.get("failed") is not True and rerun["changed"] is False, rerun.get("msg")
    assert marked_rows(cluster, marker) == [["900001", f"before {marker}"]]


def test_a_cluster_configured_outside_its_data_directory(collections_dir: Path) -> None:
    """Debian's layout: the restored data directory holds no postgresql.conf; the scratch cluster starts with pg_config_file."""
    base, cluster, repo = make_world("pgbackrest-etc-", EtcCluster)
    assert isinstance(cluster, EtcCluster)
    try:
        world = archive_and_deploy(collections_dir, cluster, repo)
        runuser = ["runuser", "-u", OS_USER, "--"]
        result = run_module(collections_dir, "pgbackrest_restore", restore_args(
            world, scratch_port=free_port(), pg_config_file=str(cluster.config_file), stop_command=[*runuser, *cluster.pg_ctl("stop", "-m", "fast")],
            start_command=[*runuser, *cluster.pg_ctl("start")]))
        assert result.get("failed") is not True, result.get("msg")
        assert not (cluster.data / "postgresql.conf").exists()
        assert marked_rows(cluster, world.marker) == [["900001", f"before {world.marker}"]]
        assert repo.pgbackrest("check").returncode == 0
    finally:
        for data in base.glob("data*"):
            if (data / "postmaster.pid").exists():
                subprocess.run(["runuser", "-u", OS_USER, "--", *cluster.pg_ctl("stop", "-m", "immediate")], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def small_disk() -> t.Iterator[Path]:
    """A 400 MB file system of its own (tmpfs), for a restore that would not fit."""
    mount = Path(tempfile.mkdtemp(prefix="pgbackrest-disk-"))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400m,mode=0755", "tmpfs", str(mount)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def test_a_restore_that_does_not_fit_is_refused(small_disk: Path, collections_dir: Path) -> None:
    base, cluster, repo = make_world(str(small_disk / "pgbackrest-full-"))
    try:
        world = archive_and_deploy(collections_dir, cluster, repo)
        # leave 64 MB: less than the backup's size plus the margin for the WAL the recovery replays
        left = shutil.disk_usage(small_disk).free - 64 * 2**20
        with (small_disk / "ballast").open("wb") as ballast:
            os.posix_fallocate(ballast.fileno(), 0, left)
        rows = marked_rows(cluster, world.marker)
        result = run_module(collections_dir, "pgbackrest_restore", restore_args(world, scratch_port=free_port()))
        assert result["failed"] is True and "MB free for" in result["msg"] and "the restore needs" in result["msg"], result["msg"]
        assert result["changed"] is False and not any(p.exists() for p in paths(world))
        assert marked_rows(cluster, world.marker) == rows
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def cipher_free(result: dict[str, t.Any], repo: Repo) -> bool:
    return repo.cipher_pass not in str(result)


def listening() -> tuple[socket.socket, int]:
    port = free_port()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock, port


def misconfigured_stanza(world: Deployed) -> dict[str, t.Any]:
    """A configuration whose stanza names another data directory."""
    other = world.repo.base / "other.conf"
    other.write_text(world.repo.config.read_text(encoding="utf-8").replace(f"pg1-path={world.cluster.data}", "pg1-path=/srv/elsewhere"),
                     encoding="utf-8")
    return {"config": str(other)}


def empty_include(world: Deployed) -> dict[str, t.Any]:
    empty = world.repo.base / "empty.d"
    empty.mkdir(exist_ok=True)
    return {"config_include_path": str(empty)}


REFUSALS: dict[str, tuple[t.Callable[[Deployed], dict[str, t.Any]], str]] = {
    "never_created": (lambda w: {"restore_point": "deploy-never-created"}, "holds no restore point named deploy-never-created"),
    "never_archived": (lambda w: {"wal_segment": w.journal["wal_segment"][:8] + "00000000000000F0"}, "is not in the repository"),
    "restore_path_exists": (lambda w: {"restore_path": str(w.repo.base)}, "restore_path"),
    "keep_path_exists": (lambda w: {"keep_path": str(w.repo.path)}, "keep_path"),
    "wrong_cipher_pass": (lambda w: {"cipher_pass": "not-" + w.repo.cipher_pass}, "cannot be read"),
    "no_repository_key": (empty_include, "no repository cipher pass"),
    "misconfigured_stanza": (misconfigured_stanza, "sets pg1-path to /srv/elsewhere"),
    "unknown_stanza": (lambda w: {"stanza": "elsewhere"}, "does not exist"),
    "backup_after_the_point": (lambda w: {"backup_set": "20991231-000000F"}, "backup_set"),
    "other_file_system": (lambda w: {"restore_path": "/dev/shm/pgbackrest-restore-test", "keep_path": "/dev/shm/pgbackrest-keep-test"}, "file system"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_inputs_are_refused_before_data_moves(case: str, untouched: Deployed, collections_dir: Path) -> None:
    cluster, marker = untouched.cluster, untouched.marker
    restored, kept = paths(untouched)
    extra, expected = REFUSALS[case]
    rows = marked_rows(cluster, marker)
    backups = untouched.repo.backups()
    result = run_module(collections_dir, "pgbackrest_restore", restore_args(untouched, scratch_port=free_port(), **extra(untouched)))
    assert result["failed"] is True and expected in result["msg"], result["msg"]
    assert result["changed"] is False and result["swapped"] is False
    assert not restored.exists() and not kept.exists()
    assert [c["purpose"] for c in result["commands"] if "restore" in str(c["purpose"]) and "backup" in str(c["purpose"])] == []
    assert marked_rows(cluster, marker) == rows, "the live cluster still serves, unchanged"
    assert untouched.repo.backups() == backups
    assert cipher_free(result, untouched.repo)


def test_a_busy_scratch_port_is_refused(untouched: Deployed, collections_dir: Path) -> None:
    sock, port = listening()
    try:
        result = run_module(collections_dir, "pgbackrest_restore", restore_args(untouched, scratch_port=port))
    finally:
        sock.close()
    assert result["failed"] is True and f"scratch_port {port} is in use" in result["msg"]
    assert not any(p.exists() for p in paths(untouched))
    assert len(marked_rows(untouched.cluster, untouched.marker)) == 2


def test_without_the_segment_a_missing_restore_point_stops_at_the_scratch_recovery(untouched: Deployed, collections_dir: Path) -> None:
    args = restore_args(untouched, scratch_port=free_port(), restore_point="deploy-not-in-the-wal")
    del args["wal_segment"], args["restore_point_lsn"]
    result = run_module(collections_dir, "pgbackrest_restore", args)
    assert result["failed"] is True, result
    assert "did not reach restore point deploy-not-in-the-wal" in result["msg"] and "nothing was swapped" in result["msg"]
    assert result["swapped"] is False and result["downtime_seconds"] is None
    cluster = untouched.cluster
    assert not Path(f"{cluster.data}.restored-deploy-not-in-the-wal").exists(), "the failed restore is cleaned up"
    assert len(marked_rows(cluster, untouched.marker)) == 2

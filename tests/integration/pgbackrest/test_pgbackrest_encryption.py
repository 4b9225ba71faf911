"""The repository is encrypted: its files are not plain, and a wrong cipher pass cannot read them."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from pgbackrest_world import Cluster, Repo, run_module


@pytest.mark.usefixtures("stanza_run")
def test_repository_files_are_not_plain(world: tuple[Cluster, Repo]) -> None:
    repo = world[1]
    info = (repo.path / "backup" / repo.stanza / "backup.info").read_bytes()
    assert info.startswith(b"Salted__") and b"[backrest]" not in info
    segments = [p for p in (repo.path / "archive" / repo.stanza).rglob("0000*") if p.is_file()]
    assert segments
    # zstd-compressed data would start with its magic number; encrypted data starts with the OpenSSL salt header
    assert all(p.read_bytes()[:8] == b"Salted__" for p in segments)


def test_a_wrong_cipher_pass_cannot_read_the_repository(world: tuple[Cluster, Repo], stanza_run: dict[str, t.Any],
                                                        collections_dir: Path) -> None:
    cluster, repo = world
    wrong = repo.pgbackrest("--output=json", "info", env={"PGBACKREST_REPO1_CIPHER_PASS": "not-" + repo.cipher_pass}, include=False)
    assert '"code":99' in wrong.stdout.replace(" ", "") or wrong.returncode != 0, wrong.stdout
    assert stanza_run["backup"]["label"] not in wrong.stdout
    right = repo.pgbackrest("--output=json", "info", env={"PGBACKREST_REPO1_CIPHER_PASS": repo.cipher_pass}, include=False)
    assert stanza_run["backup"]["label"] in right.stdout

    # the module given a wrong pass (it wins over the include file) fails before any backup or restore point
    before = repo.backups()
    archived = cluster.sql("SELECT archived_count FROM pg_stat_archiver")
    result = run_module(collections_dir, "pgbackrest_backup", repo.module_args(cipher_pass="not-" + repo.cipher_pass, restore_point="deploy-wrong-pass"))
    assert result["failed"] is True and "cannot be read" in result["msg"]
    assert repo.cipher_pass not in str(result)
    assert repo.backups() == before
    assert cluster.sql("SELECT archived_count FROM pg_stat_archiver") == archived

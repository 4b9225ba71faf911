"""A cluster archiving into its stanza, with a deploy's restore point between rows written before and after it: what a
point-in-time rollback starts from; and a cluster configured outside its data directory, as on Debian."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import typing as t
from pathlib import Path

from pgbackrest_world import OS_USER, PG_BIN, Cluster, Repo, as_postgres, run_module


class Deployed(t.NamedTuple):
    cluster: Cluster
    repo: Repo
    journal: dict[str, t.Any]
    marker: str


def archive_and_deploy(collections_dir: Path, cluster: Cluster, repo: Repo) -> Deployed:
    """Stanza + first full backup, a row before the deploy, the deploy's backup and restore point, a row after it."""
    stanza = run_module(collections_dir, "pgbackrest_stanza", repo.module_args(restart_command=cluster.restart_command()))
    assert stanza.get("failed") is not True, stanza.get("msg")
    marker = secrets.token_hex(6)
    cluster.sql(f"INSERT INTO payments VALUES (900001, 1, 'before {marker}')")
    deploy = run_module(collections_dir, "pgbackrest_backup", repo.module_args(restore_point=f"deploy-{marker}"))
    assert deploy.get("failed") is not True, deploy.get("msg")
    cluster.sql(f"INSERT INTO payments VALUES (900002, 2, 'after {marker}')")
    cluster.sql("SELECT pg_switch_wal()")
    point = deploy["restore_point"]
    # what the journal's backup_pgbackrest holds
    journal = {"stanza": repo.stanza, "backup_label": deploy["backup"]["label"], "restore_point": point["name"],
               "restore_point_lsn": point["lsn"], "restore_point_time": point["time"], "wal_segment": point["wal_segment"]}
    return Deployed(cluster, repo, journal, marker)


def restore_args(world: Deployed, **extra: t.Any) -> dict[str, t.Any]:
    """pgbackrest_restore's arguments from the journal, with pg_ctl (through runuser as root) starting the live cluster."""
    cluster = world.cluster
    journal = world.journal
    args = {"pg_data": str(cluster.data), "restore_point": journal["restore_point"], "restore_point_lsn": journal["restore_point_lsn"],
            "wal_segment": journal["wal_segment"], "backup_set": journal["backup_label"], "backup_after": "none", "recovery_timeout": 120}
    return world.repo.module_args(**{**args, **extra})


def marked_rows(cluster: Cluster, marker: str) -> list[list[str]]:
    return cluster.sql(f"SELECT id, note FROM payments WHERE note LIKE '%{marker}' ORDER BY id")


def start_command(cluster: Cluster) -> list[str]:
    """pg_ctl start as the module would run a given command (as root): through runuser."""
    prefix = ["runuser", "-u", OS_USER, "--"]
    return [*prefix, *cluster.pg_ctl("start")]


class EtcCluster(Cluster):
    """A cluster laid out as Debian's: postgresql.conf, pg_hba.conf and pg_ident.conf in ``base/etc``, none in the data
    directory; pg_ctl works on the configuration directory."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.etc = base / "etc"
        self.config_file = self.etc / "postgresql.conf"

    def init(self, settings: dict[str, str] | None = None) -> None:
        super().init(settings)
        self.etc.mkdir()
        for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            (self.data / name).rename(self.etc / name)
        with self.config_file.open("a", encoding="utf-8") as handle:
            handle.write(f"data_directory = '{self.data}'\nhba_file = '{self.etc / 'pg_hba.conf'}'\nident_file = '{self.etc / 'pg_ident.conf'}'\n")
        for path in (self.etc, *self.etc.iterdir()):
            shutil.chown(path, OS_USER, OS_USER)

    def pg_ctl(self, *args: str) -> list[str]:
        return [str(PG_BIN / "pg_ctl"), "-D", str(self.etc), "-l", str(self.data.with_suffix(".log")), "-w", "-t", "120", *args]

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self.pg_ctl("stop", "-m", "immediate"), check=False, capture_output=True, cwd=self.base, **as_postgres())

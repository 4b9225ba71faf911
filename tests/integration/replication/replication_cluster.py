"""A throw-away PostgreSQL 15 primary (the amcheck suite's cluster: initdb, scram-sha-256, a free loopback port; its
default wal_level is replica) and streaming replicas made from it with pg_basebackup -R, plus the module runner."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import typing as t
from pathlib import Path

AMCHECK_SUITE = Path(__file__).resolve().parents[1] / "postgres_amcheck"
if str(AMCHECK_SUITE) not in sys.path:
    sys.path.insert(0, str(AMCHECK_SUITE))

from amcheck_cluster import PG_BIN, Cluster, as_postgres  # noqa: E402  pylint: disable=wrong-import-position

MODULE = "ansible_collections.payments.deploy.plugins.modules.pg_replication_info"
REPLICATION_ROLE = "replicator"
MONITOR_ROLE = "svc"
REPLICA_NAME = "replica_a"


class Primary(Cluster):
    """The primary, with a replication role for its replicas and an unprivileged service role."""

    def __init__(self) -> None:
        super().__init__()
        self.replication_password = secrets.token_hex(16)
        self.service_password = secrets.token_hex(16)

    def prepare(self) -> None:
        self.init()
        self.start()
        self.execute(f"CREATE ROLE {REPLICATION_ROLE} LOGIN REPLICATION PASSWORD '{self.replication_password}'")
        self.execute(f"CREATE ROLE {MONITOR_ROLE} LOGIN PASSWORD '{self.service_password}'")

    def lsn(self) -> str:
        return str(self.execute("SELECT pg_current_wal_lsn()::text")[0][0])

    def lsn_at_least(self, lsn: str, floor: str) -> bool:
        return bool(self.execute("SELECT %s::pg_lsn >= %s::pg_lsn", params=(lsn, floor))[0][0])

    def streaming(self) -> list[str]:
        return [row[0] for row in self.execute("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")]


class Replica(Cluster):
    """A hot standby seeded by pg_basebackup -R, streaming from ``primary`` as ``name`` (its application_name). It reports
    its replay position every second, so that a test does not wait out the default 10 s on a quiet primary."""

    def __init__(self, primary: Primary, name: str) -> None:
        super().__init__()
        self.primary = primary
        self.name = name
        self.password = primary.password  # the superuser came with the copy

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        env = {"PATH": os.environ["PATH"], "PGPASSWORD": self.primary.replication_password}
        subprocess.run([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", REPLICATION_ROLE,
                        "-D", str(self.data), "-R", "-X", "stream", "-c", "fast", "--no-sync"],
                       check=True, capture_output=True, env=env, **as_postgres())
        conninfo = (f"host=127.0.0.1 port={self.primary.port} user={REPLICATION_ROLE} "
                    f"password={self.primary.replication_password} application_name={self.name}")
        with (self.data / "postgresql.auto.conf").open("a", encoding="utf-8") as handle:
            handle.write(f"primary_conninfo = '{conninfo}'\nwal_receiver_status_interval = 1\n")

    def start_streaming(self, timeout: float = 60) -> None:
        self.start()
        deadline = time.monotonic() + timeout
        while self.name not in self.primary.streaming():
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.name} does not stream:\n{self.log()}")
            time.sleep(0.1)

    def paused(self) -> bool:
        return str(self.execute("SELECT pg_get_wal_replay_pause_state()")[0][0]) != "not paused"


def run_module(collections_dir: Path, work: Path, args: dict[str, t.Any], check: bool = False) -> dict[str, t.Any]:
    """pg_replication_info as Ansible runs it (its own Python process reading its arguments); its JSON result."""
    payload = {**args, **({"_ansible_check_mode": True} if check else {})}
    args_file = work / f"args-{secrets.token_hex(4)}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(collections_dir), "LANG": "C.UTF-8"}
    proc = subprocess.run([sys.executable, "-m", MODULE, str(args_file)], capture_output=True, text=True, env=env,
                          timeout=180, check=False)
    args_file.unlink()
    try:
        result: dict[str, t.Any] = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"module output is not JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc
    assert (proc.returncode != 0) == (result.get("failed") is True), f"exit status {proc.returncode} for {result}"
    return result


class Check:
    """Runs the module against a primary as its superuser; keyword arguments override its options."""

    def __init__(self, collections_dir: Path, work_dir: Path) -> None:
        self.collections_dir = collections_dir
        self.work_dir = work_dir

    def __call__(self, server: Primary | Replica | None, check: bool = False, **options: t.Any) -> dict[str, t.Any]:
        """``server`` is connected to as its superuser; None when ``options`` set the url."""
        args = {"ssl_mode": "disable", "timeout": 30, **options}
        if server is not None:
            args.setdefault("url", server.dsn())
        return run_module(self.collections_dir, self.work_dir, args, check=check)

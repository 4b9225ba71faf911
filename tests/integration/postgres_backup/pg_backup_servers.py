"""A real PostgreSQL 15 cluster (initdb in a temporary directory, run as ``postgres``) and a real S3 server (moto).

Both listen on 127.0.0.1 on free ports; ``stop()`` ends every process they started.
Also used by ``bench/backup_bench.py``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import psycopg
from loopback_ports import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
COLLECTION_ROOT = Path(__file__).resolve().parents[3]


def as_postgres() -> dict[str, t.Any]:
    """Popen arguments that drop to the postgres user when running as root (PostgreSQL refuses root).

    Not ``runuser``: signals must reach the postmaster itself, not a wrapper that forwards them as SIGTERM.
    """
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}


def collections_dir_for_checkout() -> Path:
    """The directory to put on ANSIBLE_COLLECTIONS_PATH: the checkout's own, or a temporary one linking to it."""
    if COLLECTION_ROOT.parent.name == "payments" and COLLECTION_ROOT.parent.parent.name == "ansible_collections":
        return COLLECTION_ROOT.parents[2]
    made = COLLECTION_ROOT / ".cache" / "collections"
    if (made / "ansible_collections" / "payments" / "deploy").exists():
        return made
    tmp = Path(tempfile.mkdtemp(prefix="payments-deploy-collections-"))
    (tmp / "ansible_collections" / "payments").mkdir(parents=True)
    (tmp / "ansible_collections" / "payments" / "deploy").symlink_to(COLLECTION_ROOT)
    return tmp


class PostgresCluster:
    """initdb + postgres on a free port with scram-sha-256 password authentication over TCP."""

    def __init__(self, directory: Path | None = None, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        self.dir = directory or Path(tempfile.mkdtemp(prefix="pgbk-"))
        self.data = self.dir / "data"
        self.port = port or free_port()
        self.user = "postgres"
        self.password = "pw-" + secrets.token_hex(12)
        self.settings = settings or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def conninfo(self) -> dict[str, t.Any]:
        return {"host": "127.0.0.1", "port": self.port, "user": self.user, "password": self.password}

    def login(self) -> dict[str, t.Any]:
        """Connection options of the modules."""
        return {"login_host": "127.0.0.1", "login_port": self.port, "login_user": self.user, "login_password": self.password}

    def init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", self.user, "--pwfile", str(pwfile),
                        "-A", "scram-sha-256", "-E", "UTF8", "--locale", "C.UTF-8", "--no-sync"],
                       check=True, capture_output=True, cwd=self.dir, **as_postgres())
        pwfile.unlink()
        conf = {"listen_addresses": "'127.0.0.1'", "port": str(self.port), "unix_socket_directories": f"'{self.dir}'",
                "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "logging_collector": "off",
                **self.settings}
        with (self.data / "postgresql.conf").open("a") as handle:
            handle.write("\n" + "".join(f"{key} = {value}\n" for key, value in conf.items()))

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self.init()
        log = open(self.dir / "postgres.log", "ab")  # pylint: disable=consider-using-with
        # -p: a reused data directory gets the port picked for this run
        self.process = subprocess.Popen([str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port)], stdout=log, stderr=log,
                                        cwd=self.dir, **as_postgres())
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"postgres exited with {self.process.returncode}:\n{self.log()}")
            try:
                with psycopg.connect(**self.conninfo, dbname="postgres", connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise AssertionError(f"postgres did not start:\n{self.log()}")

    def log(self) -> str:
        path = self.dir / "postgres.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self, remove: bool = True) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: ends the sessions still connected
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, dbname: str = "postgres", autocommit: bool = True) -> psycopg.Connection[t.Any]:
        return psycopg.connect(**self.conninfo, dbname=dbname, autocommit=autocommit)

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple[t.Any, ...]]:
        with self.connect(dbname) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def databases(self) -> set[str]:
        return {row[0] for row in self.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")}


class MotoS3:
    """``moto_server`` on a free port: a real HTTP S3 endpoint."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = Path(sys.executable).with_name("moto_server")
        cmd = [str(server)] if server.exists() else [sys.executable, "-m", "moto.server"]
        self.process = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("moto_server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def client(self) -> t.Any:
        import boto3  # pylint: disable=import-outside-toplevel

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

"""A throw-away PostgreSQL 15 cluster (initdb as the postgres user, password auth, a free port) and ways to run db_migrate."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

import psycopg
from loopback_ports import free_port

COLLECTION_ROOT = Path(__file__).resolve().parents[3]
SERVICE_PLAN = COLLECTION_ROOT / "lab" / "payment_service" / "migrations"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
MODULE = "ansible_collections.payments.deploy.plugins.modules.db_migrate"
START_TIMEOUT_S = 30
OMIT = object()  # as a module argument's value: leave the argument out (the module's default applies)


def collections_dir_for_checkout() -> Path:
    """The directory to put on ANSIBLE_COLLECTIONS_PATH / PYTHONPATH: the checkout's own, or a temporary one linking to it."""
    if COLLECTION_ROOT.parent.name == "payments" and COLLECTION_ROOT.parent.parent.name == "ansible_collections":
        return COLLECTION_ROOT.parents[2]
    tmp = Path(tempfile.mkdtemp(prefix="payments-deploy-collections-"))
    (tmp / "ansible_collections" / "payments").mkdir(parents=True)
    (tmp / "ansible_collections" / "payments" / "deploy").symlink_to(COLLECTION_ROOT)
    return tmp


def _as_postgres_user() -> dict[str, t.Any]:
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


@dataclass
class Cluster:
    """A running cluster; ``password`` is the postgres superuser's."""

    port: int
    password: str
    base: Path
    proc: subprocess.Popen[bytes]

    def dsn(self, dbname: str = "postgres") -> str:
        """Superuser connection string."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str, autocommit: bool = True) -> psycopg.Connection[t.Any]:
        """A new superuser connection to ``dbname``."""
        return psycopg.connect(self.dsn(dbname), autocommit=autocommit)

    def create_database(self) -> str:
        """A new empty database with a random name."""
        name = f"mig_{secrets.token_hex(6)}"
        with self.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, closing whatever is still connected to it."""
        with self.connect("postgres") as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def log(self) -> str:
        """The server log so far."""
        return (self.base / "postgres.log").read_text(errors="replace")


def start_cluster() -> Cluster:
    """initdb with scram-sha-256 password auth, start on a free port on 127.0.0.1 (no Unix socket)."""
    owner = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="payments-migrations-pg-"))
    if owner:
        shutil.chown(base, owner, owner)
    password, port = secrets.token_hex(16), free_port()
    try:
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        if owner:
            shutil.chown(pwfile, owner, owner)
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(base / "data"), "-U", "postgres", "--auth=scram-sha-256",
                        f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C"], check=True, capture_output=True, **_as_postgres_user())
        with open(base / "postgres.log", "wb") as log:
            proc = subprocess.Popen([str(PG_BIN / "postgres"), "-D", str(base / "data"), "-p", str(port),
                                     "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off"],
                                    stdout=log, stderr=subprocess.STDOUT, **_as_postgres_user())
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    cluster = Cluster(port, password, base, proc)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            psycopg.connect(cluster.dsn(), connect_timeout=1).close()
            return cluster
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop_cluster(cluster)
                raise RuntimeError(f"PostgreSQL did not start:\n{(base / 'postgres.log').read_text(errors='replace')}") from None
            time.sleep(0.1)


def stop_cluster(cluster: Cluster) -> None:
    """Fast shutdown (SIGINT), then remove the cluster's files."""
    if cluster.proc.poll() is None:
        cluster.proc.send_signal(signal.SIGINT)
        try:
            cluster.proc.wait(30)
        except subprocess.TimeoutExpired:
            cluster.proc.kill()
            cluster.proc.wait()
    shutil.rmtree(cluster.base, ignore_errors=True)


class ModuleRunner:
    """Runs db_migrate as a separate Python process, the way Ansible runs a module, against one database."""

    def __init__(self, cluster: Cluster, dbname: str, collections_dir: Path, work: Path) -> None:
        self.cluster = cluster
        self.dbname = dbname
        self.collections_dir = collections_dir
        self.work = work
        self.count = 0

    def args(self, plan_dir: Path, **extra: t.Any) -> dict[str, t.Any]:
        """Module arguments for this database and plan; ``extra`` wins."""
        args: dict[str, t.Any] = {"login_host": "127.0.0.1", "login_port": self.cluster.port, "login_user": "postgres",
                                  "login_password": self.cluster.password, "db": self.dbname, "plan_dir": str(plan_dir),
                                  "ssl_mode": "disable"}
        args.update(extra)
        return {key: value for key, value in args.items() if value is not OMIT}

    def start(self, plan_dir: Path, check: bool = False, diff: bool = False, **extra: t.Any) -> subprocess.Popen[str]:
        """Start the module in the background; finish() waits for its result."""
        args = self.args(plan_dir, **extra)
        if check:
            args["_ansible_check_mode"] = True
        if diff:
            args["_ansible_diff"] = True
        self.count += 1
        args_file = self.work / f"args-{self.count}.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        env = {**os.environ, "PYTHONPATH": str(self.collections_dir)}
        return subprocess.Popen([sys.executable, "-m", MODULE, str(args_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)

    @staticmethod
    def finish(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, t.Any]:
        """The module's JSON result (``rc`` added); fails loudly when the output is not JSON."""
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        try:
            result: dict[str, t.Any] = json.loads(out)
        except ValueError as exc:
            raise AssertionError(f"module output is not JSON (rc {proc.returncode}):\n{out}\n{err}") from exc
        result["rc"] = proc.returncode
        return result

    def run(self, plan_dir: Path, check: bool = False, diff: bool = False, **extra: t.Any) -> dict[str, t.Any]:
        """Run the module and return its result."""
        return self.finish(self.start(plan_dir, check=check, diff=diff, **extra))

"""A throw-away PostgreSQL 15 cluster for the amcheck tests (initdb as ``postgres``, password auth, a free port),
which can be stopped and started again so that tests can damage relation files while it is down."""

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
from pathlib import Path

import psycopg
from loopback_ports import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
COLLECTION_ROOT = Path(__file__).resolve().parents[3]
MODULE = "ansible_collections.payments.deploy.plugins.modules.pg_amcheck"


def as_postgres() -> dict[str, t.Any]:
    """PostgreSQL refuses to run as root; signals must reach the postmaster itself (no runuser wrapper)."""
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}


def collections_dir_for_checkout() -> Path:
    """The directory to put on PYTHONPATH: the checkout's own, or a temporary one linking to it."""
    if COLLECTION_ROOT.parent.name == "payments" and COLLECTION_ROOT.parent.parent.name == "ansible_collections":
        return COLLECTION_ROOT.parents[2]
    tmp = Path(tempfile.mkdtemp(prefix="payments-deploy-collections-"))
    (tmp / "ansible_collections" / "payments").mkdir(parents=True)
    (tmp / "ansible_collections" / "payments" / "deploy").symlink_to(COLLECTION_ROOT)
    return tmp


class Cluster:
    """initdb + postgres on 127.0.0.1 (no Unix socket), scram-sha-256; ``password`` is the superuser's."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="payments-amcheck-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None

    def init(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=scram-sha-256",
                        f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, **as_postgres())
        pwfile.unlink()

    def start(self) -> None:
        with open(self.base / "postgres.log", "ab") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                 "-c", "unix_socket_directories=", "-c", "fsync=off"], stdout=log, stderr=subprocess.STDOUT, **as_postgres())
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"PostgreSQL did not start:\n{self.log()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): sessions end, a shutdown checkpoint writes every dirty page to its file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        path = self.base / "postgres.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{user}:{password or self.password}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[t.Any]:
        return psycopg.connect(self.dsn(dbname), autocommit=True)

    def execute(self, sql: str, dbname: str = "postgres", params: tuple[t.Any, ...] | None = None) -> list[tuple[t.Any, ...]]:
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []


def run_module(collections_dir: Path, work: Path, args: dict[str, t.Any], check: bool = False,
               module: str = MODULE) -> dict[str, t.Any]:
    """Run pg_amcheck (or another module) as Ansible does (a separate Python process reading its arguments); its JSON
    result, with the process' exit status and output (``rc``, ``output``)."""
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    args_file = work / f"args-{secrets.token_hex(4)}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {**{key: value for key, value in os.environ.items() if not key.startswith("PG")}, "PYTHONPATH": str(collections_dir)}
    proc = subprocess.run([sys.executable, "-m", module, str(args_file)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    args_file.unlink()
    try:
        result: dict[str, t.Any] = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"module output is not JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc
    result["rc"] = proc.returncode
    result["output"] = proc.stdout + proc.stderr
    return result

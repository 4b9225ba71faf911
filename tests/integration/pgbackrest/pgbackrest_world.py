"""A throw-away PostgreSQL 15 cluster (pg_ctl, so that it can be restarted; peer authentication over its Unix socket
as on Debian) and a pgBackRest configuration with an encrypted posix repository in the same temporary directory.

Also used by ``bench/pgbackrest_bench.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import pytest

from loopback_ports import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PGBACKREST = Path("/usr/bin/pgbackrest")
COLLECTION_ROOT = Path(__file__).resolve().parents[3]
OS_USER = "postgres"


def as_postgres() -> dict[str, t.Any]:
    """PostgreSQL and (with peer authentication) pgBackRest must run as the cluster's OS user."""
    return {"user": OS_USER, "group": OS_USER, "extra_groups": []} if os.geteuid() == 0 else {}


def give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, OS_USER, OS_USER)


def collections_dir_for_checkout() -> Path:
    made = COLLECTION_ROOT / ".cache" / "collections"
    if (made / "ansible_collections" / "payments" / "deploy").exists():
        return made
    tmp = Path(tempfile.mkdtemp(prefix="payments-deploy-collections-"))
    (tmp / "ansible_collections" / "payments").mkdir(parents=True)
    (tmp / "ansible_collections" / "payments" / "deploy").symlink_to(COLLECTION_ROOT)
    return tmp


class Cluster:
    """initdb + pg_ctl in ``base/<name>``, listening only on its Unix socket in ``base`` and a loopback port."""

    def __init__(self, base: Path, name: str = "data", port: int | None = None) -> None:
        self.base = base
        self.data = base / name
        self.port = port or free_port()

    def init(self, settings: dict[str, str] | None = None) -> None:
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", OS_USER, "-A", "peer", "-E", "UTF8",
                        "--locale", "C.UTF-8", "--no-sync"], check=True, capture_output=True, cwd=self.base, **as_postgres())
        self.configure(settings or {})

    def configure(self, settings: dict[str, str]) -> None:
        conf = {"listen_addresses": "'127.0.0.1'", "port": str(self.port), "unix_socket_directories": f"'{self.base}'",
                "fsync": "off", "logging_collector": "off", "max_wal_size": "'4GB'", **settings}
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as handle:
            handle.write("\n" + "".join(f"{key} = {value}\n" for key, value in conf.items()))

    def pg_ctl(self, *args: str) -> list[str]:
        return [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.data.with_suffix(".log")), "-w", "-t", "120", *args]

    def restart_command(self) -> list[str]:
        """As the modules run it (as root here): through runuser, since pg_ctl refuses root."""
        prefix = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []
        return [*prefix, *self.pg_ctl("restart", "-m", "fast")]

    def start(self) -> None:
        subprocess.run(self.pg_ctl("start"), check=True, capture_output=True, cwd=self.base, **as_postgres())

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self.pg_ctl("stop", "-m", "immediate"), check=False, capture_output=True, cwd=self.base, **as_postgres())

    def wait_promoted(self, timeout: float = 120) -> bool:
        """Wait until recovery has ended (pg_ctl -w returns as soon as a recovering server accepts connections)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sql("SELECT pg_is_in_recovery()") == [["f"]]:
                return True
            time.sleep(0.2)
        return False

    def sql(self, query: str) -> list[list[str]]:
        proc = subprocess.run([str(PG_BIN / "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", str(self.base), "-p", str(self.port),
                               "-d", "postgres", "-c", query], check=True, capture_output=True, text=True, cwd=self.base, **as_postgres())
        return [line.split("|") for line in proc.stdout.splitlines() if line]


class Repo:
    """pgbackrest.conf (no secret) plus conf.d/cipher.conf (mode 0600, the cipher pass) for one stanza."""

    def __init__(self, base: Path, cluster: Cluster, stanza: str = "payments") -> None:
        self.base = base
        self.cluster = cluster
        self.stanza = stanza
        self.path = base / "repo"
        self.config = base / "pgbackrest.conf"
        self.include = base / "conf.d"
        self.cipher_pass = secrets.token_urlsafe(32)

    def write(self, cipher: bool = True, pass_in_include: bool = True) -> None:
        for directory in (self.path, self.include, self.base / "lock", self.base / "spool"):
            directory.mkdir(exist_ok=True)
            give_to_postgres(directory)
        lines = ["[global]", f"repo1-path={self.path}", "repo1-retention-full=2", "log-level-file=off",
                 f"lock-path={self.base / 'lock'}", f"spool-path={self.base / 'spool'}", "start-fast=y", "compress-type=zst",
                 "archive-timeout=60"]
        if cipher:
            lines.append("repo1-cipher-type=aes-256-cbc")
        lines += ["", f"[{self.stanza}]", f"pg1-path={self.cluster.data}", f"pg1-port={self.cluster.port}", f"pg1-socket-path={self.base}"]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        secret = self.include / "cipher.conf"
        secret.unlink(missing_ok=True)
        if pass_in_include:
            secret.write_text(f"[global]\nrepo1-cipher-pass={self.cipher_pass}\n", encoding="utf-8")
            secret.chmod(0o600)
            give_to_postgres(secret)

    def module_args(self, **extra: t.Any) -> dict[str, t.Any]:
        return {"stanza": self.stanza, "config": str(self.config), "config_include_path": str(self.include), "os_user": OS_USER,
                "pg_port": self.cluster.port, "pg_socket_path": str(self.base), "pg_bin_dir": str(PG_BIN), **extra}

    def pgbackrest(self, *args: str, env: dict[str, str] | None = None, include: bool = True) -> subprocess.CompletedProcess[str]:
        options = [f"--config={self.config}", f"--stanza={self.stanza}", "--log-level-console=warn"]
        if include:
            options.append(f"--config-include-path={self.include}")
        return subprocess.run([str(PGBACKREST), *options, *args], capture_output=True, text=True, errors="replace", check=False, cwd=self.base,
                              env={"PATH": os.environ["PATH"], **(env or {})}, **as_postgres())

    def backups(self) -> list[dict[str, t.Any]]:
        proc = self.pgbackrest("--output=json", "info")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)[0].get("backup", [])


def run_module(collections_dir: Path, module: str, args: dict[str, t.Any], check_mode: bool = False) -> dict[str, t.Any]:
    """The module file as its own process with its arguments on stdin, as AnsiballZ hands them over."""
    payload = {**args, **({"_ansible_check_mode": True} if check_mode else {})}
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(collections_dir), "LANG": "C.UTF-8"}
    proc = subprocess.run([sys.executable, "-m", f"ansible_collections.payments.deploy.plugins.modules.{module}"],
                          input=json.dumps({"ANSIBLE_MODULE_ARGS": payload}), capture_output=True, text=True, check=False,
                          timeout=600, env=env, cwd=collections_dir)
    try:
        result = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc
    assert (proc.returncode != 0) == (result.get("failed") is True), f"exit status {proc.returncode} for {result}"
    return result


def new_base(prefix: str) -> Path:
    base = Path(tempfile.mkdtemp(prefix=prefix))
    give_to_postgres(base)
    return base


def make_world(prefix: str, cluster_type: type[Cluster] = Cluster) -> tuple[Path, Cluster, Repo]:
    """A running cluster holding 20000 payments and its repository's configuration, in a new temporary directory."""
    if not os.access(PG_BIN / "postgres", os.X_OK) or not os.access(PGBACKREST, os.X_OK):
        pytest.skip(f"PostgreSQL 15 ({PG_BIN}) or pgBackRest ({PGBACKREST}) is not installed")
    base = new_base(prefix)
    cluster = cluster_type(base)
    cluster.init()
    cluster.start()
    cluster.sql("CREATE TABLE payments (id bigint PRIMARY KEY, amount bigint NOT NULL, note text)")
    cluster.sql("INSERT INTO payments SELECT g, g * 100, 'before' FROM generate_series(1, 20000) g")
    repo = Repo(base, cluster)
    repo.write()
    return base, cluster, repo


@contextlib.contextmanager
def running_world(prefix: str) -> t.Iterator[tuple[Cluster, Repo]]:
    """make_world's cluster and repository, stopped and removed afterwards."""
    base, cluster, repo = make_world(prefix)
    try:
        yield cluster, repo
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)

"""The preflight role's certificate check (tasks_from: certificates), run by ansible-playbook against real TLS servers
on 127.0.0.1: one failure names every endpoint that fails, and bad settings are refused before any connection."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from conftest import COLLECTIONS_DIR
from loopback_ports import free_port
from tls_servers import DAY, Pki, TlsServer, utcnow

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
PLAYBOOK = """
- name: Check the TLS endpoints
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Check them
      ansible.builtin.include_role:
        name: payments.deploy.preflight
        tasks_from: certificates
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def servers(pki: Pki) -> t.Iterator[dict[str, TlsServer]]:
    good = pki.issue("pay.lab.test", ["pay.lab.test"])
    expired = pki.issue("old.lab.test", ["old.lab.test"], not_before=utcnow() - 100 * DAY, days=90)
    db = pki.issue("db.lab.test", ["db.lab.test"])
    started = {"good": TlsServer(good.cert_path, good.key_path), "expired": TlsServer(expired.cert_path, expired.key_path),
               "db": TlsServer(db.cert_path, db.key_path, postgres="S"), "db_plain": TlsServer(db.cert_path, db.key_path, postgres="N")}
    yield started
    for server in started.values():
        server.close()


def playbook(tmp_path: Path, extra_vars: dict[str, t.Any]) -> tuple[int, str]:
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    run_env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_DIR), ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "inventory.json"), str(tmp_path / "play.yml"),
                           "-e", f"@{tmp_path / 'vars.json'}"], capture_output=True, text=True, env=run_env,
                          cwd=tmp_path, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def endpoint(name: str, server: TlsServer, server_name: str, pki: Pki, **extra: t.Any) -> dict[str, t.Any]:
    return {"name": name, "host": "127.0.0.1", "port": server.port, "server_name": server_name, "ca_path": str(pki.ca_path), **extra}


def test_every_endpoint_passes(tmp_path: Path, pki: Pki, servers: dict[str, TlsServer]) -> None:
    rc, out = playbook(tmp_path, {"preflight_tls_endpoints": [
        endpoint("frontend", servers["good"], "pay.lab.test", pki),
        endpoint("database", servers["db"], "db.lab.test", pki, starttls="postgres")]})
    assert rc == 0, out
    assert re.search(r"localhost\s*: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", out), out


def test_one_failure_names_every_failing_endpoint(tmp_path: Path, pki: Pki, servers: dict[str, TlsServer]) -> None:
    refused = free_port()
    rc, out = playbook(tmp_path, {"preflight_tls_min_days_valid": 7, "preflight_tls_ca_path": str(pki.ca_path), "preflight_tls_endpoints": [
        {"name": "frontend", "host": "127.0.0.1", "port": servers["good"].port, "server_name": "pay.lab.test"},
        {"name": "old", "host": "127.0.0.1", "port": servers["expired"].port, "server_name": "old.lab.test"},
        {"name": "gone", "host": "127.0.0.1", "port": refused},
        {"name": "database", "host": "127.0.0.1", "port": servers["db_plain"].port, "starttls": "postgres"},
        {"name": "nowhere-ca", "host": "127.0.0.1", "port": servers["good"].port, "ca_path": str(tmp_path / "missing.pem")}]})
    assert rc == 2, out
    message = next(line for line in out.splitlines() if "TLS endpoint(s) fail the certificate check" in line)
    assert "Preflight: 4 of 5 TLS endpoint(s) fail the certificate check; nothing was changed." in message
    assert "frontend (" not in message
    assert f"old (127.0.0.1:{servers['expired'].port}): the certificate expired on " in message
    assert f"gone (127.0.0.1:{refused}): 127.0.0.1:{refused} refused the connection" in message
    assert f"database (127.0.0.1:{servers['db_plain'].port}): the server does not offer TLS" in message
    assert f"nowhere-ca (127.0.0.1:{servers['good'].port}): ca_path {tmp_path / 'missing.pem'} does not exist" in message


@pytest.mark.parametrize(("endpoints", "expected"), [
    ([{"name": "frontend", "host": "127.0.0.1", "port": 0}], "needs a port from 1 to 65535 (got 0)"),
    ([{"name": "frontend", "host": "127.0.0.1", "port": 443}, {"name": "frontend", "host": "127.0.0.1", "port": 443}],
     "preflight_tls_endpoints names frontend more than once"),
    ([{"host": "127.0.0.1", "port": 443}, {"name": "x", "host": "127.0.0.1", "port": 443, "ca-path": "/x"}], "preflight_tls_endpoints"),
])
def test_bad_settings_are_refused_before_connecting(tmp_path: Path, pki: Pki, servers: dict[str, TlsServer],
                                                    endpoints: list[dict[str, t.Any]], expected: str) -> None:
    before = servers["good"].connections
    endpoints = [dict(e, port=servers["good"].port) if e.get("port") == 443 else e for e in endpoints]
    rc, out = playbook(tmp_path, {"preflight_tls_endpoints": endpoints})
    assert rc == 2 and expected in out, out
    assert "nothing was changed" in out or "Validation of arguments failed" in out
    assert "Check the certificate each TLS endpoint serves" not in out
    assert servers["good"].connections == before

"""The preflight role's checks of each app host's environment, rendered by ansible-playbook from the role's own vars:
line separators (as str.splitlines knows them), and DATABASE_URL's and REDIS_URL's TLS for production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

from conftest import COLLECTION_ROOT, COLLECTIONS_DIR

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
KEY = "ab" * 32
GOOD_URL = "postgresql://payments:p%40ss@db.example.com:5432/payments?sslmode=verify-full&sslrootcert=/etc/ca.pem"
PLAYBOOK = f"""
- name: Render the preflight problems
  hosts: localhost
  gather_facts: false
  vars_files:
    - {COLLECTION_ROOT}/roles/preflight/defaults/main.yml
    - {COLLECTION_ROOT}/roles/preflight/vars/main.yml
  tasks:
    - name: Write them
      ansible.builtin.copy:
        content: "{{{{ preflight_problems_json }}}}"
        dest: "{{{{ result_file }}}}"
        mode: "0600"
"""


def env(**changes: str) -> dict[str, str]:
    base = {"DATABASE_URL": GOOD_URL, "REDIS_URL": "redis://:x@127.0.0.1:6379/0", "STRIPE_SECRET_KEY": "sk_live_x",
            "STRIPE_WEBHOOK_SECRET": "whsec_x", "ENCRYPTION_KEY": KEY, "HASH_SALT": "salt", "PAYMENTS_API_KEY": "k",
            "PAYMENTS_ADMIN_KEY": "a"}
    return {**base, **changes}


def problems(tmp_path: Path, hosts: dict[str, dict[str, str]], environment: str = "production",
             **extra_vars: t.Any) -> list[str]:
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                  "release_version": "1.0.0", "deploy_environment": environment,
                                  "traffic_frontend_urls": {environment: "http://127.0.0.1:1"}, **extra_vars},
                         "children": {f"{environment}_app": {"hosts": {
                             name: {"payments_colour_ports": {"blue": 1, "green": 2},
                                    "release_supervisor_config": "/x", "payments_env": payments_env}
                             for name, payments_env in hosts.items()}}}}}
    (tmp_path / "inventory.yml").write_text(json.dumps(inventory))  # JSON is YAML; \u2028 and the like stay escaped
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    result_file = tmp_path / "problems.json"
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    run_env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_DIR), ANSIBLE_LOCALHOST_WARNING="0")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml"),
                           "-e", f"result_file={result_file}"], capture_output=True, text=True, env=run_env,
                          cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found: list[str] = json.loads(result_file.read_text())
    return found


def test_every_line_separator_and_an_unencrypted_production_database_are_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "good": env(),
        "plaintext": env(DATABASE_URL="postgresql://payments:x@db.example.com/payments"),
        "prefer": env(DATABASE_URL="postgresql://payments:x@db.example.com/payments?sslmode=prefer"),
        "no_database": env(DATABASE_URL="postgresql://payments:x@db.example.com:5432?sslmode=require"),
        "unicode_separator": env(HASH_SALT="salt\u2028PAYMENTS_AUTH_DISABLED=1"),
        "next_line": env(PAYMENTS_API_KEY="k\x85X=1"),
        "trailing_newline": env(ENCRYPTION_KEY=KEY + "\n"),
        "loopback": env(DATABASE_URL="postgresql://payments:x@127.0.0.1:5432/payments"),
    })
    assert sorted(found) == sorted([
        "plaintext: DATABASE_URL of production must use TLS: add ?sslmode=verify-full (or verify-ca, require) with "
        "sslrootcert=<CA file>; without it libpq falls back to a connection an attacker on the path can read or "
        "downgrade",
        "prefer: DATABASE_URL of production must use TLS: add ?sslmode=verify-full (or verify-ca, require) with "
        "sslrootcert=<CA file>; without it libpq falls back to a connection an attacker on the path can read or "
        "downgrade",
        "no_database: DATABASE_URL: the PostgreSQL URL names no database (postgresql://user:password@host:port/DATABASE): "
        "libpq would use the login user's default database",
        "unicode_separator: HASH_SALT holds a line break or another line separator",
        "next_line: PAYMENTS_API_KEY holds a line break or another line separator",
        "trailing_newline: ENCRYPTION_KEY must be 32 bytes as 64 hex characters",
        "trailing_newline: ENCRYPTION_KEY holds a line break or another line separator",
        "loopback: DATABASE_URL of production must use TLS: add ?sslmode=verify-full (or verify-ca, require) with "
        "sslrootcert=<CA file>; without it libpq falls back to a connection an attacker on the path can read or "
        "downgrade",
    ])


def test_the_opt_out_covers_loopback_databases_only(tmp_path: Path) -> None:
    hosts = {"loopback": env(DATABASE_URL="postgresql://payments:x@127.0.0.1:5432/payments"),
             "socket": env(DATABASE_URL="postgresql://payments@%2Frun%2Fpostgresql/payments"),
             "remote": env(DATABASE_URL="postgresql://payments:x@db.example.com/payments")}
    found = problems(tmp_path, hosts, payments_db_plaintext_opt_out="lab database on 127.0.0.1 without TLS")
    assert [p.split(":")[0] for p in found] == ["remote"]


def test_a_production_redis_on_another_host_needs_tls(tmp_path: Path) -> None:
    hosts = {"remote": env(REDIS_URL="redis://:x@cache.example.com:6379/0"),
             "remote_ipv6": env(REDIS_URL="redis://:x@[2001:db8::7]:6379/0"),
             "no_password": env(REDIS_URL="redis://cache.example.com/0"),
             "tls": env(REDIS_URL="rediss://:x@cache.example.com:6380/0?ssl_ca_certs=/etc/ca.pem"),
             "loopback": env(REDIS_URL="redis://:x@127.0.0.1:6379/0"),
             "localhost": env(REDIS_URL="redis://:x@localhost:6379/0"),
             "loopback_ipv6": env(REDIS_URL="redis://:x@[::1]:6379/0")}
    found = problems(tmp_path, hosts)
    assert sorted(found) == sorted(
        f"{host}: REDIS_URL of production must use TLS to reach {name}: use rediss:// (with ssl_ca_certs=<CA file> when a "
        "private CA signed its certificate); redis:// sends the password and every cached value in clear text"
        for host, name in (("remote", "cache.example.com"), ("remote_ipv6", "[2001:db8::7]"),
                           ("no_password", "cache.example.com")))
    # Staging is not in preflight_tls_environments: the same URLs pass there.
    assert problems(tmp_path, {"remote": env(REDIS_URL="redis://:x@cache.example.com:6379/0")}, environment="staging") == []

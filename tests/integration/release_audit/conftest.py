"""Runs the release_audit role's entry points with ansible-playbook on this machine (local connection): an app host of
production or staging whose runtime is this interpreter, whose release ships a requirements file, and whose new
colour's log is a real file."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURE_ADVISORIES = Path(__file__).resolve().parent / "fixtures" / "advisories"
LAB_ADVISORIES = REPO / "lab" / "advisories"
HOST = "app1"

PLAY = """- name: Release audit
  hosts: all
  gather_facts: false
  tasks:
    - name: Run an entry point of the role
      ansible.builtin.include_role:
        name: payments.deploy.release_audit
        tasks_from: "{{ entry_point }}"

    - name: Change something (what a deploy does once the audit passed)
      ansible.builtin.copy:
        content: "changed\\n"
        dest: "{{ marker_file }}"
        mode: "0600"
"""


class Run(t.NamedTuple):
    rc: int
    stdout: str
    stderr: str
    report: dict[str, t.Any] | None

    def tasks(self) -> list[tuple[str, dict[str, t.Any]]]:
        assert self.report is not None, self.stdout
        return [(task["task"]["name"].split(" : ")[-1], task["hosts"][HOST]) for play in self.report["plays"]
                for task in play["tasks"] if HOST in task["hosts"]]

    def failure(self) -> str:
        failed = [str(result.get("msg", "")) for name, result in self.tasks() if result.get("failed")]
        return " ".join(failed[-1].split()) if failed else ""

    def result_of(self, name: str) -> dict[str, t.Any]:
        return next(result for task, result in self.tasks() if task == name)


def secret_env() -> dict[str, str]:
    """A service environment with fresh secrets (the percent-encoded characters make the URL's password differ from its
    text in the URL)."""
    return {
        "STRIPE_SECRET_KEY": "sk_live_" + secrets.token_urlsafe(30),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(24),
        "ENCRYPTION_KEY": secrets.token_hex(32),
        "HASH_SALT": secrets.token_hex(32),
        "DATABASE_URL": f"postgresql://payments:{secrets.token_urlsafe(18)}%2F%40@127.0.0.1:5432/payments?sslmode=verify-full",
        "REDIS_URL": f"rediss://:{secrets.token_urlsafe(24)}@127.0.0.1:6380/0",
        "PAYMENTS_RATE_LIMIT_PER_MINUTE": "10",
    }


class AuditWorld:
    """One app host's files (requirements, log) in a temporary directory, and ansible-playbook runs against it."""

    def __init__(self, base: Path, collections_dir: Path) -> None:
        self.base = base
        self.collections_dir = collections_dir
        self.env = secret_env()
        self.log_dir = base / "var" / "log" / "payments"
        self.log_dir.mkdir(parents=True)
        self.log = self.log_dir / "payment-service-green.log"
        self.requirements = base / "requirements.txt"
        self.requirements.write_text("payments-example-lib==1.4.0\n", encoding="utf-8")
        self.marker = base / "changed.txt"

    def write_log(self, lines: list[str]) -> None:
        self.log.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def run(self, entry_point: str, environment: str = "production", verbosity: int = 0, json_report: bool = True,
            check: bool = False, **variables: t.Any) -> Run:
        host_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                     "entry_point": entry_point, "marker_file": str(self.marker), "deploy_environment": environment,
                     "release_audit_python": sys.executable, "release_audit_requirements_file": str(self.requirements),
                     "release_audit_advisory_database": str(FIXTURE_ADVISORIES), "release_colour": "green",
                     "release_audit_log_dir": str(self.log_dir), "payments_env": self.env, **variables}
        inventory = {"all": {"children": {f"{environment}_app": {"hosts": {HOST: host_vars}}}}}
        (self.base / "play.yml").write_text(PLAY, encoding="utf-8")
        (self.base / "hosts.json").write_text(json.dumps(inventory), encoding="utf-8")
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_COLLECTIONS_PATH": str(self.collections_dir), "ANSIBLE_PIPELINING": "1"}
        if json_report:
            env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.base / "hosts.json"),
                str(self.base / "play.yml")] + (["-" + "v" * verbosity] if verbosity else []) + (["--check"] if check else [])
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
        report = None
        if json_report:
            try:
                report = json.JSONDecoder().raw_decode(proc.stdout.lstrip())[0]
            except ValueError:
                pytest.fail(f"ansible-playbook wrote no JSON report (rc {proc.returncode}): {proc.stdout}{proc.stderr}")
        return Run(proc.returncode, proc.stdout, proc.stderr, report)

    def secret_pieces(self) -> list[str]:
        """Every secret value, and a URL's password alone: none may appear in any output."""
        pieces = []
        for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "ENCRYPTION_KEY", "HASH_SALT"):
            pieces.append(self.env[name])
        for name in ("DATABASE_URL", "REDIS_URL"):
            pieces.append(self.env[name].split("@", maxsplit=1)[0].rsplit(":", 1)[1])
        return pieces


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="release-audit-collections-"))
    (directory / "ansible_collections" / "payments").mkdir(parents=True)
    (directory / "ansible_collections" / "payments" / "deploy").symlink_to(REPO)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def world(tmp_path: Path, collections_dir: Path) -> AuditWorld:
    return AuditWorld(tmp_path, collections_dir)

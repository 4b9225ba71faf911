"""Runs the production_gate role with ansible-playbook on this machine (local connection): a load balancer host that
runs the gate, and app hosts of production and staging whose payments_env holds freshly generated secrets."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from host_python import HOST_PYTHON

REPO = Path(__file__).resolve().parents[3]
CHECKLIST_MAP = Path(__file__).resolve().parent / "fixtures" / "checklist-map.yml"
GATE_HOST = "lb1"
ROLES = ("development_lead", "security_officer", "operations_manager", "business_owner")
PEOPLE = ("Ada Lovelace", "Grace Hopper", "Margaret Hamilton", "Lex Morgan")

PLAY = """- name: Production gate, then a first change
  hosts: loadbalancers
  gather_facts: false
  tasks:
    - name: Gate the deploy
      ansible.builtin.include_role:
        name: payments.deploy.production_gate

    - name: Show the record
      ansible.builtin.debug:
        var: production_gate_record

    - name: Change something (what a deploy does once the gate passed)
      ansible.builtin.copy:
        content: "changed\\n"
        dest: "{{ marker_file }}"
        mode: "0600"
"""


def today(offset_days: int = 0) -> str:
    return (datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=offset_days)).isoformat()


def strong_env(salt: str | None = None) -> dict[str, str]:
    return {
        "HASH_SALT": salt or secrets.token_hex(32),
        "DATABASE_URL": (f"postgresql://payments:{secrets.token_urlsafe(24)}@db1.example.test:5432/payments"
                         "?sslmode=verify-full&sslrootcert=/etc/payments/db-ca.pem"),
        "REDIS_URL": f"rediss://:{secrets.token_urlsafe(24)}@cache.example.test:6380/0",
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(24),
        "PAYMENTS_RATE_LIMIT_PER_MINUTE": "10",
    }


class Run(t.NamedTuple):
    rc: int
    report: dict[str, t.Any]
    stdout: str

    def results(self) -> list[tuple[str, dict[str, t.Any]]]:
        return [(task["task"]["name"].split(" : ")[-1], task["hosts"][GATE_HOST]) for play in self.report["plays"]
                for task in play["tasks"] if GATE_HOST in task["hosts"]]

    def failure(self) -> str:
        failed = [result.get("msg", "") for name, result in self.results() if result.get("failed")]
        return " ".join(str(failed[-1]).split()) if failed else ""

    def record(self) -> dict[str, t.Any]:
        shown = [result["production_gate_record"] for name, result in self.results() if name == "Show the record"]
        assert shown, self.stdout
        return shown[-1]

    def changed(self) -> int:
        return self.report["stats"][GATE_HOST]["changed"]


@dataclass
class GateWorld:
    """One test's inventory directory, sign-off file and secrets."""

    base: Path
    collections_dir: Path
    sha256: str = field(default_factory=lambda: hashlib.sha256(secrets.token_bytes(16)).hexdigest())
    production_salt: str = field(default_factory=lambda: secrets.token_hex(32))
    staging_salt: str = field(default_factory=lambda: secrets.token_hex(32))
    envs: dict[str, dict[str, str]] = field(default_factory=dict)

    def fresh_envs(self) -> None:
        """Production's two app hosts share one salt; staging's differs."""
        self.envs = {"app1": strong_env(self.production_salt), "app2": strong_env(self.production_salt),
                     "stg1": strong_env(self.staging_salt)}

    @property
    def marker(self) -> Path:
        return self.base / "changed-by-the-deploy"

    def signoffs(self) -> dict[str, t.Any]:
        return {role: {"name": person, "date": today(1), "reference": f"CHG-{2000 + index}", "sha256": self.sha256}
                for index, (role, person) in enumerate(zip(ROLES, PEOPLE))}

    def complete(self) -> dict[str, t.Any]:
        return {
            "signoffs": self.signoffs(),
            "attestations": {
                "pre-security-pentest": {"by": "Grace Hopper", "date": today(4), "reference": "PENTEST-2026-Q4"},
                "pre-perf-load": {"by": "Margaret Hamilton", "date": today(2), "reference": "LOAD-311"},
            },
            "waivers": {"pre-compliance-pci": {
                "by": "Grace Hopper", "date": today(60),
                "justification": "Card data never touches our hosts: Stripe Elements collects it (SAQ A)."}},
        }

    def write_signoffs(self, document: dict[str, t.Any]) -> str:
        (self.base / "signoffs.yml").write_text(yaml.safe_dump(document, sort_keys=False))
        return "signoffs.yml"  # relative: read from the inventory's directory

    def inventory(self, variables: dict[str, t.Any]) -> Path:
        local = {"ansible_connection": "local", "ansible_python_interpreter": HOST_PYTHON}
        inventory = {"all": {
            "vars": {**local, "marker_file": str(self.marker), "production_gate_release_sha256": self.sha256,
                     "production_gate_checklist_map": str(CHECKLIST_MAP), **variables},
            "children": {
                "loadbalancers": {"hosts": {GATE_HOST: {}}},
                "production_app": {"hosts": {host: {"payments_env": self.envs[host]} for host in ("app1", "app2")}},
                "staging_app": {"hosts": {"stg1": {"payments_env": self.envs["stg1"]}}},
            }}}
        path = self.base / "hosts.yml"
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))
        return path

    def run(self, variables: dict[str, t.Any] | None = None, extra_vars: dict[str, t.Any] | None = None,
            check: bool = False, play: str = PLAY) -> Run:
        (self.base / "play.yml").write_text(play)
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.inventory(variables or {})),
                str(self.base / "play.yml")] + (["--check"] if check else [])
        if extra_vars is not None:
            (self.base / "extra.json").write_text(json.dumps(extra_vars))
            argv += ["-e", f"@{self.base / 'extra.json'}"]
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_COLLECTIONS_PATH": str(self.collections_dir), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
               "ANSIBLE_LOCAL_TEMP": str(self.base / "tmp")}
        proc = subprocess.run(argv, cwd=self.base, env=env, capture_output=True, text=True, timeout=300, check=False)
        try:
            # the JSON document first; the collection's phase_timings callback (ansible.cfg) prints after it
            report = json.JSONDecoder().raw_decode(proc.stdout.lstrip())[0]
        except ValueError:
            pytest.fail(f"ansible-playbook wrote no JSON report (rc {proc.returncode}): {proc.stdout}{proc.stderr}")
        return Run(proc.returncode, report, proc.stdout + proc.stderr)

    def secrets_shown(self, output: str) -> list[str]:
        """Every secret (a salt, a password, a webhook secret) found in the output, and digests of the salts."""
        found = []
        for env in self.envs.values():
            for name in ("HASH_SALT", "STRIPE_WEBHOOK_SECRET", "DATABASE_URL", "REDIS_URL"):
                value = env[name]
                secret = value.rsplit("@", 1)[0].rsplit(":", 1)[-1] if "://" in value else value
                if secret and (secret in output or hashlib.sha256(secret.encode()).hexdigest() in output):
                    found.append(name)
        return found


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="production-gate-collections-"))
    (directory / "ansible_collections" / "payments").mkdir(parents=True)
    (directory / "ansible_collections" / "payments" / "deploy").symlink_to(REPO)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def gate_world(tmp_path: Path, collections_dir: Path) -> GateWorld:
    world = GateWorld(tmp_path, collections_dir)
    world.fresh_envs()
    return world

"""Fixtures for the stripe_webhooks role's secret stores: the Stripe emulator and a moto server of this suite's own
(never the shared lab), and ansible-playbook runs with a throw-away inventory whose hosts are directories."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from secret_store_servers import REPO, STRIPE_KEY, Moto, StripeEmulator
from host_python import HOST_PYTHON

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "webhooks.yml"
MARKER = "payments-deploy-production"
URL = "https://pay.example.test/webhooks/stripe"


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    """ANSIBLE_COLLECTIONS_PATH holding this checkout as payments.deploy."""
    if REPO.parent.name == "payments" and REPO.parent.parent.name == "ansible_collections":
        yield REPO.parents[2]
        return
    tmp = Path(tempfile.mkdtemp(prefix="payments-deploy-collections-"))
    (tmp / "ansible_collections" / "payments").mkdir(parents=True)
    (tmp / "ansible_collections" / "payments" / "deploy").symlink_to(REPO)
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def stripe_emulator() -> t.Iterator[StripeEmulator]:
    emulator = StripeEmulator()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def moto() -> t.Iterator[Moto]:
    server = Moto()
    yield server
    server.stop()


class Run(t.NamedTuple):
    returncode: int
    output: str

    @property
    def changed(self) -> int:
        """changed= of the PLAY RECAP (summed over hosts)."""
        return sum(int(n) for n in re.findall(r"changed=(\d+)", self.output.split("PLAY RECAP")[-1]))


@dataclass
class World:
    """One test's inventory (lb1 and app1, each a directory under hosts/), controller directory and servers."""

    base: Path
    collections_dir: Path
    stripe: StripeEmulator
    moto: Moto
    settings: dict[str, t.Any] = field(default_factory=dict)

    def root(self, host: str) -> Path:
        return self.base / "hosts" / host

    @property
    def controller(self) -> Path:
        """Everything the controller side of a run may write: the working directory, Ansible's temp and log."""
        return self.base / "controller"

    @property
    def host_file(self) -> Path:
        return self.root("lb1") / "var" / "lib" / "payments" / "secrets" / "stripe-webhook-secret-production"

    @property
    def env_file(self) -> Path:
        return self.root("app1") / "etc" / "payments" / "payment-service-blue.env"

    def env_secret(self) -> str:
        match = re.search(r'^STRIPE_WEBHOOK_SECRET="(.*)"$', self.env_file.read_text(), re.MULTILINE)
        assert match, self.env_file.read_text()
        return match.group(1)

    def inventory(self) -> Path:
        path = self.controller / "hosts.yml"
        settings = {
            "ansible_connection": "local",
            "ansible_python_interpreter": HOST_PYTHON,
            "payments_root": str(self.base / "hosts" / "{{ inventory_hostname }}"),
            "payments_stripe_api_base": self.stripe.url,
            "release_template": str(REPO / "roles" / "release" / "templates" / "service.env.j2"),
            **self.settings,
        }
        path.write_text(yaml.safe_dump({"all": {"vars": settings, "children": {
            "loadbalancers": {"hosts": {"lb1": None}},
            "production_app": {"hosts": {"app1": {"payments_env": {
                "STRIPE_SECRET_KEY": STRIPE_KEY, "HASH_SALT": "salt",
                "STRIPE_WEBHOOK_SECRET": "{{ stripe_webhooks_secret | default('') }}"}}}},
        }}}))
        return path

    def playbook(self, *flags: str) -> Run:
        self.controller.mkdir(exist_ok=True)
        (self.controller / "tmp").mkdir(exist_ok=True)
        (self.root("app1") / "etc" / "payments").mkdir(parents=True, exist_ok=True)
        (self.root("lb1")).mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "STRIPE_", "AWS_"))}
        env.update(ANSIBLE_COLLECTIONS_PATH=str(self.collections_dir), ANSIBLE_LOCALHOST_WARNING="0",
                   ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCAL_TEMP=str(self.controller / "tmp"),
                   ANSIBLE_REMOTE_TEMP=str(self.controller / "tmp"), ANSIBLE_LOG_PATH=str(self.controller / "ansible.log"),
                   AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard")
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(self.inventory()), str(PLAYBOOK), *flags],
                              capture_output=True, text=True, env=env, cwd=self.controller, timeout=120, check=False)
        return Run(proc.returncode, proc.stdout + proc.stderr)

    def controller_files_holding(self, secret: str) -> list[Path]:
        """The files on the controller's side (not the hosts' directories) that hold ``secret``."""
        return [p for p in self.controller.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]

    def files(self) -> list[Path]:
        return sorted(p.relative_to(self.base) for p in self.base.rglob("*") if p.is_file())


@pytest.fixture
def world(tmp_path: Path, collections_dir: Path, stripe_emulator: StripeEmulator, moto: Moto) -> World:
    """No endpoint in Stripe, no secret in moto, empty host directories."""
    stripe_emulator.call("POST", "/_emulator/reset")
    moto.reset()
    return World(tmp_path, collections_dir, stripe_emulator, moto)


def stored_in_aws(world: World, name: str = "payments/production/stripe-webhook-secret") -> str | None:
    try:
        return str(world.moto.secrets().get_secret_value(SecretId=name)["SecretString"])
    except world.moto.secrets().exceptions.ResourceNotFoundException:
        return None


def json_of(text: str) -> t.Any:
    return json.loads(text)

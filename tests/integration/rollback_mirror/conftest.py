"""Fixtures for the rollback_mirror role: real throw-away Redis, Stripe emulator, SMTP sink and chat webhook on free
ports (never the shared lab), and ansible-playbook runs against them with a throw-away inventory."""

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

from mirror_servers import REPO, STRIPE_KEY, ChatWebhook, Redis, SmtpSink, StripeEmulator
from host_python import HOST_PYTHON

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
FRONTEND = "https://pay.example.test"


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
def redis_server() -> t.Iterator[Redis]:
    server = Redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stripe_emulator() -> t.Iterator[StripeEmulator]:
    emulator = StripeEmulator()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def smtp_sink() -> t.Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.stop()


@pytest.fixture
def chat() -> t.Iterator[ChatWebhook]:
    server = ChatWebhook()
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
    """One test's inventory, journal directory and servers."""

    base: Path
    collections_dir: Path
    redis: Redis
    stripe: StripeEmulator
    smtp: SmtpSink
    chat: ChatWebhook
    settings: dict[str, t.Any] = field(default_factory=dict)

    @property
    def journal(self) -> Path:
        return self.base / "journal"

    @property
    def secret_file(self) -> Path:
        return self.base / "secrets" / "webhook-secret-production"

    def inventory(self) -> Path:
        path = self.base / "hosts.yml"
        settings = {
            "ansible_connection": "local",
            "ansible_python_interpreter": HOST_PYTHON,
            "deploy_journal_dir": str(self.journal),
            "payments_stripe_api_base": self.stripe.url,
            "payments_webhook_secret_files": {"production": str(self.secret_file)},
            # This suite keeps the secret in a controller file (the earlier behaviour); the other stores have their
            # own suite (tests/integration/webhook_secret_store).
            "stripe_webhooks_secret_store": "controller_file",
            "rollback_mirror_mail_to": ["oncall@payments.test"],
            "rollback_mirror_mail_from": "deploys@payments.test",
            "rollback_mirror_smtp_host": "127.0.0.1",
            "rollback_mirror_smtp_port": self.smtp.smtp_port,
            "rollback_mirror_slack_webhook_url": self.chat.url("T000/B000/s3cretHookToken"),
            "rollback_mirror_webhooks_recreate": True,
            **self.settings,
        }
        path.write_text(yaml.safe_dump({"all": {"vars": settings, "children": {
            "loadbalancers": {"hosts": {"lb1": None}},
            "production_app": {"hosts": {"app1": {"payments_env": {
                "REDIS_URL": self.redis.url, "STRIPE_SECRET_KEY": STRIPE_KEY}}}},
        }}}))
        return path

    def playbook(self, name: str, extra: dict[str, t.Any], *flags: str) -> Run:
        """Run playbooks/NAME.yml with the extra vars (as a JSON file, like -e @file)."""
        extra_file = self.base / f"extra-{name}.json"
        extra_file.write_text(json.dumps(extra))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "STRIPE_"))}
        env.update(ANSIBLE_COLLECTIONS_PATH=str(self.collections_dir), ANSIBLE_LOCALHOST_WARNING="0",
                   ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0")
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(self.inventory()), str(PLAYBOOKS / f"{name}.yml"),
                               "-e", f"@{extra_file}", *flags], capture_output=True, text=True, env=env,
                              cwd=self.base, timeout=120, check=False)
        return Run(proc.returncode, proc.stdout + proc.stderr)

    def postmortem(self, run_id: str) -> dict[str, t.Any]:
        return dict(json.loads((self.journal / "production" / "postmortems" / f"{run_id}.json").read_text()))


@pytest.fixture
def world(tmp_path: Path, collections_dir: Path, redis_server: Redis, stripe_emulator: StripeEmulator,
          smtp_sink: SmtpSink, chat: ChatWebhook) -> World:
    """Empty Redis and Stripe (the servers are shared by the suite's tests), a fresh journal directory."""
    redis_server.client.flushall()
    stripe_emulator.call("POST", "/_emulator/reset")
    (tmp_path / "secrets").mkdir(mode=0o700)
    return World(tmp_path, collections_dir, redis_server, stripe_emulator, smtp_sink, chat)

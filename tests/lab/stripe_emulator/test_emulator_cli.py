"""The command line the lab runs: the ready line, SIGTERM, --state-file across restarts, bad key files."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import stripe

from conftest import LAB, Receiver, stop, wait_until


def test_sigterm_stops_cleanly(spawn) -> None:
    emu = spawn()
    assert emu.ok("GET", "/v1/balance")["object"] == "balance"
    assert stop(emu) == 0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", emu.port), timeout=2):
        pass


def test_state_survives_a_restart(spawn, tmp_path: Path, receiver: Receiver) -> None:
    state = tmp_path / "state.json"
    first = spawn(state_file=state)
    client = first.client()
    customer = client.v1.customers.create({"email": "kept@example.com"}, options={"idempotency_key": "keep-1"})
    hook = client.v1.webhook_endpoints.create({"url": receiver.url, "enabled_events": ["customer.updated"]})
    wait_until(state.exists, "the background writer's first state file")  # written after the answer, not before
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert stop(first) == 0
    assert hook.secret in state.read_text()  # kept, since deliveries after a restart must still be signed with it

    second = spawn(state_file=state)
    client = second.client()
    assert client.v1.customers.retrieve(customer.id).email == "kept@example.com"
    assert client.v1.customers.create({"email": "kept@example.com"}, options={"idempotency_key": "keep-1"}).id == customer.id
    assert "secret" not in client.v1.webhook_endpoints.retrieve(hook.id)
    client.v1.customers.update(customer.id, {"name": "after restart"})
    wait_until(lambda: receiver.received, "a delivery after the restart")
    event = stripe.Webhook.construct_event(receiver.received[0]["body"], receiver.received[0]["headers"]["Stripe-Signature"], hook.secret)
    assert event.type == "customer.updated" and event.data.previous_attributes.name is None
    assert len(client.v1.events.list({"limit": 100}).data) == 2


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(LAB)}
    return subprocess.run([sys.executable, "-m", "stripe_emulator", *args], capture_output=True, text=True, env=env, timeout=60,
                          check=False)


@pytest.mark.parametrize(("content", "fragment"), [
    ("not json", "cannot read the keys file"),
    (json.dumps({"keys": ["sk_test_x"]}), '"account": "acct_..."'),
    (json.dumps({"account": "acct_1", "keys": []}), "non-empty list"),
    (json.dumps({"account": "acct_1", "keys": ["pk_test_publishable"]}), "non-empty list"),
])
def test_bad_keys_file(tmp_path: Path, content: str, fragment: str) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(content)
    result = run_cli("--port", "0", "--keys-file", str(keys))
    assert result.returncode != 0 and fragment in result.stderr and "listening" not in result.stdout
    assert "sk_test_x" not in result.stderr


def test_missing_keys_file(tmp_path: Path) -> None:
    result = run_cli("--port", "0", "--keys-file", str(tmp_path / "absent.json"))
    assert result.returncode != 0 and "cannot read the keys file" in result.stderr

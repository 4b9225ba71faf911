"""The traffic_switch and smoke_test molecule scenarios pass `molecule test` against real programs started by their
prepare (HAProxy and the colours' servers; the Stripe emulator, PostgreSQL, redis-server and the payment service), leave
evidence this suite checks on its own, stop everything in destroy, and fail their verify when the evidence is wrong."""

from __future__ import annotations

import http.client
import json
import os
import socket
import typing as t
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from loopback_ports import free_port
from real_haproxy import HAPROXY, runtime_command
from molecule_runner import Scenario

pytestmark = pytest.mark.timeout(900)

SWITCH_SEQUENCE = ("syntax", "create", "prepare", "converge", "idempotence", "verify")
# the smoke_test scenario has no idempotence step: every smoke test makes new payments (see its molecule.yml)
SMOKE_SEQUENCE = ("syntax", "create", "prepare", "converge", "verify")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SECRET_SETTINGS = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "ENCRYPTION_KEY", "HASH_SALT", "PAYMENTS_API_KEY",
                   "PAYMENTS_ADMIN_KEY", "PAYMENTS_SMOKE_KEY", "DATABASE_URL", "REDIS_URL")


def assert_actions_passed(scenario: Scenario, *args: str, sequence: tuple[str, ...]) -> str:
    """`molecule <args>` passed every action of ``sequence``; returns its output."""
    run = scenario.molecule(*args)
    assert run.rc == 0, run.output[-6000:]
    for action in sequence:
        assert run.action_result(scenario.name, action) == "Executed: Successful", (action, run.output[-6000:])
    return run.output


def assert_destroy_removes_state(scenario: Scenario) -> None:
    run = scenario.molecule("destroy")
    assert run.rc == 0, run.output[-6000:]
    assert not scenario.state.exists()


def verify_failed(scenario: Scenario, output: str) -> bool:
    """Whether molecule says the verify action failed (a lone action's line, not the summary of a whole sequence)."""
    return f"[{scenario.name} > verify] Executed: Failed" in output


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def running(pid_file: Path) -> int:
    """The pid a pid file names when that process runs (0 otherwise)."""
    pid = int(pid_file.read_text().split()[0])
    return pid if Path(f"/proc/{pid}").exists() else 0


def version_through(port: int) -> dict[str, t.Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/version", headers={"Connection": "close"})
        answer = conn.getresponse()
        assert answer.status == 200
        return dict(json.loads(answer.read()))
    finally:
        conn.close()


@pytest.fixture(name="switch_scenario")
def traffic_switch_scenario(scenario: t.Callable[[str], Scenario]) -> t.Iterator[tuple[Scenario, dict[str, int]]]:
    if not os.access(HAPROXY, os.X_OK):
        pytest.skip("haproxy is not installed")
    ports = {name: free_port() for name in ("LB_PORT", "APP1_BLUE", "APP1_GREEN", "APP2_BLUE", "APP2_GREEN")}
    switch = scenario("traffic_switch")
    switch.env.update(PAYMENTS_MOLECULE_HAPROXY=HAPROXY,
                      **{f"PAYMENTS_MOLECULE_SWITCH_{name}": str(port) for name, port in ports.items()})
    yield switch, ports


def test_traffic_switch_scenario_moves_production_to_green_and_verify_catches_a_flip_back(switch_scenario: tuple[Scenario, dict[str, int]]) -> None:
    switch, ports = switch_scenario
    output = assert_actions_passed(switch, "test", "--destroy", "never", sequence=SWITCH_SEQUENCE)
    assert "Switch the environment to colour green" in output
    haproxy_pid = running(switch.state / "haproxy.pid")
    backends_pid = running(switch.state / "backends.pid")
    assert haproxy_pid and backends_pid
    # HAProxy still runs after verify: every answer through the frontend is green, from both app hosts
    answers = [version_through(ports["LB_PORT"]) for attempt in range(8)]
    assert {answer["colour"] for answer in answers} == {"green"}
    assert {answer["instance"] for answer in answers} == {"app1-green", "app2-green"}
    assert {answer["version"] for answer in answers} == {"1.1.0"}
    # the switch went through the runtime API and was persisted: HAProxy's map and the file agree
    shown = runtime_command(str(switch.state / "admin.sock"), f"show map {switch.state / 'colours.map'}")
    assert shown.split()[1:] == ["production", "green"], shown
    assert (switch.state / "colours.map").read_text().split() == ["production", "green"]

    # someone flips production back through the runtime API (not the file): HAProxy serves blue again, verify fails
    runtime_command(str(switch.state / "admin.sock"), f"set map {switch.state / 'colours.map'} production blue")
    assert version_through(ports["LB_PORT"])["colour"] == "blue"
    run = switch.molecule("verify")
    assert run.rc != 0
    assert verify_failed(switch, run.output), run.output[-6000:]
    assert "the frontend answered colours ['blue']" in run.output, run.output[-6000:]

    assert_destroy_removes_state(switch)
    assert not Path(f"/proc/{haproxy_pid}").exists() and not Path(f"/proc/{backends_pid}").exists()
    assert not [name for name, port in ports.items() if listening(port)]


class Emulator:
    """The Stripe emulator the smoke_test scenario's prepare started, read with the service's own key."""

    def __init__(self, state: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.key = json.loads((state / "service.env.json").read_text())["STRIPE_SECRET_KEY"]

    def call(self, method: str, path: str, form: dict[str, str] | None = None) -> dict[str, t.Any]:
        data = urllib.parse.urlencode(form).encode() if form else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.key}"})
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (loopback)
            return dict(json.load(answer))

    def payment_intents(self) -> list[dict[str, t.Any]]:
        return list(self.call("GET", "/v1/payment_intents?limit=100")["data"])


@pytest.fixture(name="smoke_scenario")
def smoke_test_scenario(scenario: t.Callable[[str], Scenario]) -> t.Iterator[tuple[Scenario, dict[str, int]]]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 is not installed")
    ports = {name: free_port() for name in ("SERVICE", "STRIPE", "POSTGRES", "REDIS")}
    smoke = scenario("smoke_test")
    smoke.env.update({f"PAYMENTS_MOLECULE_SMOKE_{name}_PORT": str(port) for name, port in ports.items()})
    yield smoke, ports


def test_smoke_test_scenario_pays_refunds_and_verify_catches_a_foreign_payment(smoke_scenario: tuple[Scenario, dict[str, int]]) -> None:
    smoke, ports = smoke_scenario
    output = assert_actions_passed(smoke, "test", "--destroy", "never", sequence=SMOKE_SEQUENCE)
    assert "Smoke test of molecule (blue colour on app1) passed" in output
    settings = json.loads((smoke.state / "service.env.json").read_text())
    assert oct((smoke.state / "service.env.json").stat().st_mode & 0o777) == "0o600"
    assert [name for name in SECRET_SETTINGS if settings[name] in output] == []
    # converge's and verify's passing runs made three payments each; the replay and the stopped service none
    intents = Emulator(smoke.state, ports["STRIPE"]).payment_intents()
    assert len(intents) == 6
    assert {intent["status"] for intent in intents} == {"succeeded"}
    # verify stopped the service; the emulator, redis-server and PostgreSQL run until destroy
    assert not listening(ports["SERVICE"])
    assert listening(ports["STRIPE"]) and listening(ports["REDIS"]) and listening(ports["POSTGRES"])
    postgres_dir = Path(json.loads((smoke.state / "services.json").read_text())["postgres_dir"])
    assert (postgres_dir / "data" / "postmaster.pid").exists()

    # a payment made beside the smoke test: verify now finds seven PaymentIntents where converge made three, and fails
    # on that before it uses the (stopped) service
    emulator = Emulator(smoke.state, ports["STRIPE"])
    emulator.call("POST", "/v1/payment_intents", {"amount": "50", "currency": "usd", "payment_method_types[]": "card"})
    run = smoke.molecule("verify")
    assert run.rc != 0
    assert verify_failed(smoke, run.output), run.output[-6000:]
    assert "Check that converge's payments succeeded in Stripe" in run.output, run.output[-6000:]

    assert_destroy_removes_state(smoke)
    assert not [name for name, port in ports.items() if listening(port)]
    assert not postgres_dir.exists()

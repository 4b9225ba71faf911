"""Start and stop: configuration errors stop the start, SIGTERM lets in-flight requests finish."""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING, Callable

import pytest

if TYPE_CHECKING:
    from conftest import Reply, RunningService

pytestmark = pytest.mark.timeout(180)

SLOW_MS = 3000


def test_sigterm_lets_an_in_flight_request_finish(launcher: Callable[..., RunningService],
                                                  service_env: dict[str, str], api_key: str) -> None:
    running = launcher({**service_env, "PAYMENTS_TEST_SLOW_MS": str(SLOW_MS)})
    customer = running.call("POST", "/v1/customers", token=api_key, body={"email": "c@example.com", "name": "C"})
    replies: list[Reply] = []
    slow = threading.Thread(target=lambda: replies.append(
        running.call("GET", f"/v1/customers/{customer.json()['id']}", token=api_key, timeout=30)))
    started = time.monotonic()
    slow.start()
    time.sleep(0.5)  # the request is now sleeping inside the worker
    running.proc.send_signal(signal.SIGTERM)
    slow.join(30)
    assert replies and replies[0].status == 200, running.log()
    assert replies[0].json()["id"] == customer.json()["id"]
    assert time.monotonic() - started >= SLOW_MS / 1000
    assert running.proc.wait(30) == 0, running.log()
    assert "fault injection" in running.log()


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL", "PAYMENTS_API_KEY"])
def test_missing_required_variable_stops_the_start(launcher: Callable[..., RunningService],
                                                   service_env: dict[str, str], secret_values: list[str],
                                                   missing: str) -> None:
    env = {name: value for name, value in service_env.items() if name != missing}
    running = launcher(env, wait=False)
    code = running.proc.wait(30)
    log = running.log()
    assert code != 0
    assert f"missing required environment variable(s): {missing}" in log
    assert not [value for value in secret_values if value in log]


@pytest.mark.parametrize("name, value", [("ENCRYPTION_KEY", "abc123"), ("SERVICE_COLOUR", "purple"),
                                         ("DATABASE_URL", "mysql://u:p@127.0.0.1/db")])
def test_malformed_variable_is_named_not_echoed(launcher: Callable[..., RunningService],
                                                service_env: dict[str, str], name: str, value: str) -> None:
    running = launcher({**service_env, name: value}, wait=False)
    assert running.proc.wait(30) != 0
    log = running.log()
    assert f"configuration error: {name}" in log
    assert value not in log


def test_log_of_a_busy_instance_holds_no_secret(service: RunningService, api_key: str, admin_key: str,
                                                secret_values: list[str]) -> None:
    service.call("POST", "/v1/customers", token=api_key, body={"email": "d@example.com", "name": "D"})
    service.call("GET", "/admin/stats", token=api_key)
    service.call("GET", "/admin/stats", token=admin_key)
    service.call("GET", "/v1/customers/cus_x", token="guess-" + api_key)
    log = service.log()
    assert "GET /admin/stats" in log  # the access log is there
    assert not [value for value in secret_values if value in log]

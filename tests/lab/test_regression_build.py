"""The lab's regression release 1.1.1 (fault payment-regression): healthy by every check and the smoke test's small
payments, yet every 5th payment of 10.00 or more fails with 500, before Stripe is called."""

from __future__ import annotations

import secrets
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import psycopg
import pytest

if TYPE_CHECKING:
    from conftest import Postgres, Reply, RunningService, StripeEmulator

REPO = Path(__file__).resolve().parents[2]
VERSION = "1.1.1"
SMOKE_AMOUNT = 50  # the smoke test's default payment_amount (plugins/module_utils/_smoke_options.py)
LARGE_AMOUNTS = (1000, 1200, 2500, 4999, 1000, 5000, 1001, 3000, 7500, 1000)  # 10.00 or more

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def regression_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Release 1.1.1 as `build_release.py --all` builds it, unpacked."""
    out = tmp_path_factory.mktemp("regression")
    subprocess.run([sys.executable, str(REPO / "lab" / "build_release.py"), "--all", "--output-dir", str(out)],
                   check=True, capture_output=True)
    with tarfile.open(out / f"payment-service-{VERSION}.tar.gz") as tar:
        tar.extractall(out, filter="data")
    return out / f"payment-service-{VERSION}"


def pay(service: RunningService, api_key: str, key: str, amount: int) -> Reply:
    return service.call("POST", "/v1/payments", token=api_key, headers={"Idempotency-Key": key},
                        body={"amount": amount, "currency": "eur", "payment_method": "pm_card_visa"})


def stripe_attempts(emulator: StripeEmulator, key: str) -> list[dict[str, Any]]:
    """The PaymentIntent requests the emulator received for one client key (the service scopes it)."""
    return [row for row in emulator.requests("POST", "/v1/payment_intents")
            if row["idempotency_key"] == f"payments:{key}"]


def rows_with_key(postgres: Postgres, key: str) -> int:
    with psycopg.connect(postgres.admin_dsn()) as conn:
        return int(conn.execute("SELECT count(*) FROM payments WHERE idempotency_key = %s", (key,)).fetchone()[0])


def test_regression_passes_health_and_small_payments_but_fails_every_5th_large_one(
        launcher: Callable[..., RunningService], regression_release: Path, service_env: dict[str, str],
        stripe_emulator: StripeEmulator, postgres: Postgres, api_key: str) -> None:
    running = launcher(service_env, release=regression_release)
    assert running.call("GET", "/version").json()["version"] == VERSION
    for path in ("/healthz", "/healthz/lb", "/readyz"):
        assert running.call("GET", path).status == 200, path
    small = [pay(running, api_key, "small-" + secrets.token_hex(6), SMOKE_AMOUNT) for _n in range(2 * 5)]
    assert [reply.status for reply in small] == [201] * 10  # more small payments than the period: none fails

    tag = secrets.token_hex(4)
    keys = [f"large-{tag}-{n}" for n in range(len(LARGE_AMOUNTS))]
    replies = [pay(running, api_key, key, amount) for key, amount in zip(keys, LARGE_AMOUNTS)]
    assert [reply.status for reply in replies] == [201, 201, 201, 201, 500] * 2
    for key, reply in zip(keys, replies):
        if reply.status == 500:  # Stripe-shaped, like any server error; no charge and no row
            assert reply.json() == {"error": {"type": "api_error", "code": "internal_error",
                                              "message": "internal error"}}
            assert reply.headers["x-service-version"] == VERSION
            assert not stripe_attempts(stripe_emulator, key) and rows_with_key(postgres, key) == 0
        else:
            assert reply.json()["status"] == "succeeded"
            assert len(stripe_attempts(stripe_emulator, key)) == 1 and rows_with_key(postgres, key) == 1

    assert running.metric('http_requests_total{method="POST",route="/v1/payments",status="500"}') == 2
    assert running.metric('payments_total{outcome="error"}') == 2
    assert running.metric('payments_failed_total{reason="internal_error"}') == 2
    assert running.metric('payments_total{outcome="succeeded"}') == 10 + 8
    # The failures sit in the amount buckets above 10.00 only.
    assert running.metric('payment_amount_minor_units_bucket{outcome="error",le="500.0"}') == 0
    assert running.metric('payment_amount_minor_units_count{outcome="error"}') == 2
    assert "BUILD FAULT payment-regression" in running.log()

    # The client's retry of a failed payment is the next large one: it goes through, charged once.
    retried = pay(running, api_key, keys[4], LARGE_AMOUNTS[4])
    assert retried.status == 201
    assert len(stripe_attempts(stripe_emulator, keys[4])) == 1 and rows_with_key(postgres, keys[4]) == 1

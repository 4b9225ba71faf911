"""lab/customer_traffic.py: real payments and refunds at a bounded rate, every attempt recorded, a summary that lets a
test prove each payment seen to succeed is in the database and at Stripe."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import psycopg
import pytest

if TYPE_CHECKING:
    from conftest import Postgres, RunningService, StripeEmulator

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "lab" / "customer_traffic.py"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def traffic() -> ModuleType:
    sys.path.insert(0, str(REPO / "lab"))
    try:
        import customer_traffic  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(str(REPO / "lab"))
    return customer_traffic


def stored(postgres: Postgres, payment_ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """Payment id to (intent id, amount, status) of the rows the service holds."""
    with psycopg.connect(postgres.admin_dsn()) as conn:
        rows = conn.execute("SELECT id, stripe_payment_intent_id, amount, status FROM payments WHERE id = ANY(%s)",
                            (payment_ids,)).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def test_every_payment_seen_to_succeed_is_stored_and_at_stripe(
        traffic: ModuleType, stripe_service: RunningService, stripe_emulator: StripeEmulator, postgres: Postgres,
        api_key: str) -> None:
    generator = traffic.CustomerTraffic(f"http://127.0.0.1:{stripe_service.port}", api_key, rate=8, duration=30,
                                        max_payments=16, refund_fraction=0.5, seed=7)
    summary = generator.start().wait()
    payments, refunds = summary["payments"], summary["refunds"]
    assert (payments["attempted"], payments["succeeded"], payments["failed_by_status"]) == (16, 16, {})
    assert 0 < refunds["attempted"] == refunds["succeeded"] < 16
    assert summary["attempts"] == 16 + refunds["attempted"] == len(summary["records"])
    assert summary["by_release"] == {"1.1.0": {"payments": 16, "succeeded": 16, "failed": 0,
                                               "refunds": refunds["attempted"]}}
    assert list(summary["by_instance"]) == ["app1-blue"]
    amounts = {record["payment_id"]: record["amount"] for record in summary["records"] if record["kind"] == "payment"}
    assert len(set(amounts.values())) > 1 and min(amounts.values()) >= 500 and max(amounts.values()) <= 5000
    assert all(record["sent"] <= record["done"] for record in summary["records"])

    rows = stored(postgres, payments["succeeded_ids"])
    assert set(rows) == set(payments["succeeded_ids"])
    client = stripe_emulator.client()
    refunded = {record["payment_id"] for record in summary["records"] if record["kind"] == "refund"}
    for payment_id, (intent_id, amount, status) in rows.items():
        assert amount == amounts[payment_id]
        assert status == ("refunded" if payment_id in refunded else "succeeded")
        intent = client.v1.payment_intents.retrieve(intent_id)
        assert (intent.status, intent.amount, intent.metadata["payment_id"]) == ("succeeded", amount, payment_id)
    with psycopg.connect(postgres.admin_dsn()) as conn:
        refund_rows = conn.execute("SELECT id, payment_id FROM refunds WHERE id = ANY(%s)",
                                   (refunds["succeeded_ids"],)).fetchall()
    assert {row[1] for row in refund_rows} == refunded and len(refund_rows) == len(refunded)


def test_the_cli_reports_the_regression_releases_failures(
        launcher: Callable[..., RunningService], service_env: dict[str, str], tmp_path: Path,
        stripe_emulator: StripeEmulator) -> None:
    subprocess.run([sys.executable, str(REPO / "lab" / "build_release.py"), "--version", "1.1.1", "--fault",
                    "payment-regression", "--output-dir", str(tmp_path)], check=True, capture_output=True)
    with tarfile.open(tmp_path / "payment-service-1.1.1.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    running = launcher(service_env, release=tmp_path / "payment-service-1.1.1")
    key_file = tmp_path / "secrets.json"
    key_file.write_text(json.dumps({"api_key": service_env["PAYMENTS_API_KEY"], "admin_key": "unused"}))
    out = tmp_path / "traffic.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--url", f"http://127.0.0.1:{running.port}",
                             "--api-key-file", str(key_file), "--rate", "8", "--duration", "30", "--max-payments",
                             "10", "--min-amount", "1000", "--refund-fraction", "0", "--out", str(out)],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert json.loads(result.stdout)["payments"] == {name: summary["payments"][name] for name in
                                                     ("attempted", "succeeded", "failed", "failed_by_status")}
    assert (summary["payments"]["succeeded"], summary["payments"]["failed_by_status"]) == (8, {"500": 2})
    assert summary["large_payments"]["failed"] == 2 and summary["refunds"]["attempted"] == 0
    assert summary["by_release"] == {"1.1.1": {"payments": 10, "succeeded": 8, "failed": 2, "refunds": 0}}
    failed = [record for record in summary["records"] if record["status"] == 500]
    assert [(record["payment_id"], record["result"]) for record in failed] == [(None, "internal_error")] * 2
    charged = {row["idempotency_key"] for row in stripe_emulator.requests("POST", "/v1/payment_intents")}
    assert not {f"payments:{record['idempotency_key']}" for record in failed} & charged
    assert service_env["PAYMENTS_API_KEY"] not in result.stdout + result.stderr + out.read_text()


@pytest.mark.parametrize("url, options, message", [
    ("http://192.0.2.1:8080", {}, "loopback addresses only"),
    ("http://127.0.0.1:1", {"rate": 50}, "rate must be within"),
    ("http://127.0.0.1:1", {"duration": 0}, "duration must be within"),
    ("http://127.0.0.1:1", {"max_payments": 10 ** 6}, "max_payments must be within"),
    ("http://127.0.0.1:1", {"min_amount": 900, "max_amount": 100}, "min_amount <= max_amount"),
])
def test_bad_options_are_refused_before_anything_is_sent(traffic: ModuleType, url: str, options: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(ValueError, match=message):
        traffic.CustomerTraffic(url, "pk_test", **options)


def test_the_cli_refuses_a_key_file_without_a_key(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets.json"
    key_file.write_text('{"admin_key": "ak_x"}')
    result = subprocess.run([sys.executable, str(SCRIPT), "--url", "http://127.0.0.1:1", "--api-key-file",
                             str(key_file), "--out", str(tmp_path / "out.json")],
                            capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 2 and 'has no "api_key"' in result.stderr
    assert not (tmp_path / "out.json").exists()

"""The bake after the switch, under customer traffic: a good release passes the analysis; the 1.1.1 regression
(healthy by every check, fails one payment of 10.00 or more in five) is rolled back by the deploy itself, and no
payment a customer saw succeed is lost."""
from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO
from helpers import history, live, map_colour, query, stripe_intents, versions_or_nothing

sys.path.insert(0, str(REPO / "lab"))

from customer_traffic import CustomerTraffic  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.timeout(1200)

BAKE = ("-e", "deploy_bake=true")


def customers(lab: dict, seconds: float = 600) -> CustomerTraffic:
    """Payments and refunds of mixed amounts through the production frontend, 3 a second, bounded."""
    return CustomerTraffic(lab["production_url"], lab["secrets"]["api_key"], rate=3, duration=seconds,
                           max_payments=2000, refund_fraction=0.1, seed=11,
                           payment_method="pm_lab_live_visa")  # a live-mode card: production uses the live key


def assert_no_payment_lost(lab: dict, summary: dict) -> None:
    succeeded = summary["payments"]["succeeded_ids"]
    assert succeeded, "the customers saw no payment succeed"
    rows = query(lab, "SELECT id, stripe_payment_intent_id FROM payments WHERE id = ANY(ARRAY[%s])"
                 % ",".join(f"'{payment_id}'" for payment_id in succeeded))
    assert {row[0] for row in rows} == set(succeeded), "a payment a customer saw succeed is not in the database"
    intents = stripe_intents(lab, [row[1] for row in rows][:40])
    assert all(intent.status == "succeeded" for intent in intents)


def test_good_release_passes_the_bake_and_the_regression_rolls_back_by_itself(lab, playbook):
    if versions_or_nothing(lab["production_url"]) != {"1.1.0"}:
        assert playbook("deploy.yml", "-e", "release_version=1.1.0").rc == 0

    traffic = customers(lab).start()
    try:
        good = playbook("deploy.yml", "-e", "release_version=1.0.0", *BAKE)
        assert good.rc == 0
        baked = history(lab)[-1]
        assert (baked["kind"], baked["release_to"], baked["bake"]["phase"]) == ("deploy", "1.0.0", "Successful")
        assert "Bake of production" in good.text and "Successful" in good.text
        # The service's statement latency and CPU are judged on real traffic too, not skipped for want of data.
        judged = {m["name"]: m["phase"] for m in baked["bake"]["metrics"]}
        assert judged["db_query_p95"] == judged["cpu_usage"] == "Successful", baked["bake"]
        good_colour = map_colour(lab["haproxy_map_file"])

        bad = playbook("deploy.yml", "-e", "release_version=1.1.1", *BAKE,
                       "-e", json.dumps({"staging_gate_override": "regression drill: the bake must catch it"}))
    finally:
        summary = traffic.stop()
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}, default=str)[:3000])

    assert bad.rc != 0
    assert "FAILED" in bad.text and "Traffic was flipped back to" in bad.text
    assert map_colour(lab["haproxy_map_file"]) == good_colour
    assert live(lab["production_url"])[0] == {"1.0.0"}
    record = history(lab)[-1]
    assert (record["kind"], record["state"], record["release_from"], record["release_to"]) == \
        ("rollback", "automatic", "1.1.1", "1.0.0")
    assert record["bake"]["phase"] == "Failed"
    failed = {m["name"] for m in record["bake"]["metrics"] if m["phase"] == "Failed"}
    assert "payment_success" in failed, record["bake"]
    # The regression was live: some customer payments failed on it, and none that succeeded was lost.
    assert summary["by_release"].get("1.1.1", {}).get("failed", 0) > 0
    assert_no_payment_lost(lab, summary)

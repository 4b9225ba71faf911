"""smoke_test.yml on its own: through production's frontend, every check passes and every payment is refunded;
bad input stops it before any request."""
from __future__ import annotations

import re

import pytest

from helpers import stripe_intents, versions_or_nothing

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def production_live(lab, playbook) -> None:
    if versions_or_nothing(lab["production_url"]) != {"1.1.0"}:
        assert playbook("deploy.yml", "-e", "release_version=1.1.0").rc == 0


def test_smoke_test_through_the_production_frontend(lab, playbook, production_live):
    run = playbook("smoke_test.yml", "-e", "smoke_test_payment_count=12", "-v")
    assert run.rc == 0
    found = re.search(r"Smoke test of production \(frontend\) passed in ([0-9.]+) s: (\d+) checks passed, (.*?) skipped; "
                      r"(\d+) payments, p50 ([0-9.]+) s, p95 ([0-9.]+) s", " ".join(run.output.split()))
    assert found, run.output[-3000:]
    print(f"smoke test: {found.group(1)} s, {found.group(2)} checks, p95 {found.group(6)} s")
    assert found.group(3) == "none"  # the lab has a mailbox: even the email check runs
    assert int(found.group(4)) == 12 and float(found.group(6)) < 3
    intents = re.findall(r"payment_intent\"?: \"?(pi_\w+)", run.output)
    assert len(set(intents)) == 12
    for intent in stripe_intents(lab, sorted(set(intents))):
        assert intent.status == "succeeded" and intent.amount == 50 and intent.latest_charge.refunded is True


def test_a_payment_above_the_cap_stops_before_any_request(lab, playbook, production_live):
    run = playbook("smoke_test.yml", "-e", "smoke_test_payment_amount=500", "-e", "smoke_test_rate_limit_attempts=0")
    assert run.rc != 0
    assert "The smoke test found 2 problem(s) with its inputs; nothing was sent" in run.text
    assert "smoke_test_payment_amount 500 is above the cap smoke_test_payment_amount_cap 100" in run.text
    assert "smoke_test_rate_limit_attempts must be a whole number from 1 to 1000 (got 0)" in run.text
    assert "Run the smoke test" not in run.text

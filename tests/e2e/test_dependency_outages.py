"""A Stripe or Redis outage degrades the service instead of taking it out of the load balancer.

Under load through the production frontend, the lab's Stripe emulator is stopped for 10 s, then Redis for 10 s:
no request to an endpoint that needs neither may fail; payments answer 503 with Retry-After while Stripe is down;
customers are served from the database while the cache is down.
"""
from __future__ import annotations

import time

import pytest

from helpers import http, lab_program, versions_or_nothing
from loadgen import LoadGenerator, summarize

pytestmark = pytest.mark.timeout(600)
OUTAGE_S = 10


@pytest.fixture
def production_live(lab, playbook) -> None:
    if versions_or_nothing(lab["production_url"]) != {"1.1.0"}:
        assert playbook("deploy.yml", "-e", "release_version=1.1.0").rc == 0


@pytest.fixture
def customer(lab, production_live) -> str:
    status, _headers, body = http("POST", f"{lab['production_url']}/v1/customers", lab["secrets"]["api_key"],
                                  {"email": "outage@example.com", "name": "Outage Test"})
    assert status == 201, body
    return body["id"]


def outage(lab, program: str, probe) -> list:
    """Stop a lab server for OUTAGE_S seconds, calling probe() once it is down; always start it again."""
    answers = []
    lab_program(lab, "stop", program)
    try:
        deadline = time.monotonic() + OUTAGE_S
        time.sleep(1)  # let the instances notice
        while time.monotonic() < deadline:
            answers.append(probe())
            time.sleep(1)
    finally:
        lab_program(lab, "start", program)
    return answers


def test_stripe_then_redis_outage_drops_no_request_that_needs_neither(lab, customer):
    frontend, key = lab["production_url"], lab["secrets"]["api_key"]
    # About 100 requests a second on persistent connections: a faster load only takes CPU from the rest of the machine.
    version_load = LoadGenerator(f"{frontend}/version", concurrency=3, duration=120, max_requests=400000, pause=0.02)
    # A client reading customers, slower than the API key's rate limit (600 a minute, shared with the smoke tests).
    customer_load = LoadGenerator(f"{frontend}/v1/customers/{customer}", concurrency=1, duration=120,
                                  max_requests=100000, pause=0.25, headers={"Authorization": f"Bearer {key}"})

    def pay() -> tuple:
        status, headers, body = http("POST", f"{frontend}/v1/payments", key,
                                     {"amount": 50, "currency": "usd", "payment_method": "pm_lab_live_visa"},
                                     {"Idempotency-Key": f"outage-{time.time_ns()}"})
        return status, headers.get("retry-after"), body

    def instance_metrics() -> str:
        status, _headers, body = http("GET", f"{frontend}/metrics")
        return body if status == 200 else ""

    with version_load, customer_load:
        time.sleep(1)
        stripe_down = outage(lab, "stripe", lambda: (pay(), instance_metrics()))
        time.sleep(3)  # Stripe back; the instances' cached check refreshes within seconds
        redis_down = outage(lab, "redis", lambda: (http("GET", f"{frontend}/readyz")[0], instance_metrics()))
        time.sleep(2)
    versions, customers = version_load.stop(), customer_load.stop()
    print("version load:", summarize(versions))
    print("customer load:", summarize(customers))

    assert len(versions) > 1000 and len(customers) > 80, "too few requests to prove anything"
    assert [s for s in versions if not s.ok] == [], "requests to /version failed during the outages"
    assert [s for s in customers if not s.ok] == [], "customer reads failed during the outages"
    for (status, retry_after, body), _metrics in stripe_down:
        assert status == 503 and retry_after, (status, body)
        assert body["error"]["type"] == "api_error" and body["error"]["code"] == "stripe_unavailable"
    # The frontend balances /metrics over every instance, and each instance's gauge is its own last Stripe check: a
    # sample may come from an instance that has not checked since the outage began. Instances that did report it down.
    down = ['dependency_up{dependency="stripe"} 0' in metrics for _answer, metrics in stripe_down]
    assert any(down), "no instance reported Stripe down in its metrics"
    assert 'cache_requests_total{result="error"}' in redis_down[-1][1]
    assert 'dependency_up{dependency="redis"} 0' in redis_down[-1][1]
    assert {ready for ready, _metrics in redis_down} == {503}, "readiness must report Redis down"
    # Both back: a payment goes through again.
    deadline = time.monotonic() + 30
    while http("GET", f"{frontend}/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(1)
    status, _headers, body = http("POST", f"{frontend}/v1/payments", key,
                                  {"amount": 50, "currency": "usd", "payment_method": "pm_lab_live_visa"},
                                  {"Idempotency-Key": f"after-outage-{time.time_ns()}"})
    assert status == 201 and body["status"] == "succeeded", body

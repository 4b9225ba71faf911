"""smoke_test refuses every bad option before it sends a single request, and never shows a secret doing so."""

from __future__ import annotations

import typing as t

import pytest

from smoke_world import ADMIN_KEY, API_KEY, SMOKE_KEY, World, make_world, smoke_args
from stripe_module_runner import LIVE_KEY, TEST_KEY, run

from ansible_collections.payments.deploy.plugins.module_utils._smoke_report import Redactor
from ansible_collections.payments.deploy.plugins.modules import smoke_test

PASSWORD = "hunter2-in-the-url"


@pytest.fixture(scope="module")
def world() -> t.Iterator[World]:
    made = make_world()
    yield made
    made.close()


def target(name: str, url: str, **extra: t.Any) -> dict[str, t.Any]:
    return {"name": name, "url": url, **extra}


BAD_INPUTS: dict[str, tuple[dict[str, t.Any], str]] = {
    "no targets": ({"targets": []}, "targets must list at least one"),
    "target not http": ({"targets": [target("a", "ftp://127.0.0.1:1")]},
                        "targets[0] (a) url 'ftp://127.0.0.1:1' must be an http://"),
    "target with credentials": ({"targets": [target("a", f"http://smoke:{PASSWORD}@127.0.0.1:1")]},
                                "targets[0] (a) url must not contain credentials"),
    "target with query": ({"targets": [target("a", "http://127.0.0.1:1/?x=1")]}, "must not have a query or fragment"),
    "target without url": ({"targets": [{"name": "a"}]}, "missing required arguments: url"),
    "target not a dict": ({"targets": ["http://127.0.0.1:1"]}, "dictionary requested"),  # Ansible's own check
    "target a number": ({"targets": [5]}, "in the sub parameter field 'targets'"),
    "target unknown key": ({"targets": [target("a", "http://127.0.0.1:1", colour="blue")]}, "colour"),
    "target name twice": ({"targets": [target("a", "http://127.0.0.1:1"), target("a", "http://127.0.0.1:2")]},
                          "name 'a' is used twice"),
    "target url twice": ({"targets": [target("a", "http://127.0.0.1:1"), target("b", "http://127.0.0.1:1/")]},
                         "url http://127.0.0.1:1 is the url of a too"),
    "target name with space": ({"targets": [target("a b", "http://127.0.0.1:1")]}, "name must be a non-empty word"),
    "run_id with space": ({"run_id": "a b"}, "run_id must be 1 to 150 characters"),
    "run_id too long": ({"run_id": "r" * 151}, "run_id must be 1 to 150 characters"),
    "amount over the cap": ({"payment_amount": 150},
                            "payment_amount 150 is above payment_amount_cap 100: smoke payments must stay small"),
    "amount over a lower cap": ({"payment_amount": 60, "payment_amount_cap": 55},
                                "payment_amount 60 is above payment_amount_cap 55"),
    "amount zero": ({"payment_amount": 0}, "payment_amount must be a positive amount"),
    "cap zero": ({"payment_amount_cap": 0}, "payment_amount_cap must be a positive amount"),
    "fewer payments than targets": ({"payment_count": 1},
                                    "payment_count must be from 2 (one payment per target) to 100"),
    "too many payments": ({"payment_count": 101}, "payment_count must be from 2"),
    "currency upper case": ({"currency": "USD"}, "currency 'USD' must be a three-letter ISO code in lower case"),
    "payment method": ({"payment_method": "card_visa"}, "payment_method must be a PaymentMethod id"),
    "test card with a live key": ({"stripe_api_key": LIVE_KEY}, "payment_method pm_card_visa is a test payment method"),
    "customer email": ({"customer_email": "nobody"}, "customer_email 'nobody' must be an email address"),
    "p95 zero": ({"p95_threshold": 0}, "p95_threshold must be a number of seconds above 0"),
    "allowed origin with path": ({"cors_allowed_origin": "https://shop.example.com/pay"}, "cors_allowed_origin"),
    "foreign origin": ({"cors_foreign_origin": "smoke-test.invalid"},
                       "cors_foreign_origin 'smoke-test.invalid' must be an origin"),
    "same origins": ({"cors_foreign_origin": "https://shop.example.com"},
                     "cors_foreign_origin must differ from cors_allowed_origin"),
    "rate limit attempts": ({"rate_limit_attempts": 0}, "rate_limit_attempts must be from 1 to 1000"),
    "mailbox not http": ({"mailbox_url": "file:///var/mail"}, "mailbox_url 'file:///var/mail' must be an http://"),
    "mailbox with credentials": ({"mailbox_url": f"http://mail:{PASSWORD}@127.0.0.1:1"},
                                 "mailbox_url must not contain credentials"),
    "stripe api base": ({"stripe_api_base": "api.stripe.com"}, "stripe_api_base 'api.stripe.com' must be an http://"),
    "wait timeout": ({"wait_timeout": -1}, "wait_timeout must be from 0 to 600"),
    "p95 not a number": ({"p95_threshold": "nan"}, "p95_threshold must be a number of seconds above 0"),
    "p95 infinite": ({"p95_threshold": "inf"}, "p95_threshold must be a number of seconds above 0"),
    "wait timeout not a number": ({"wait_timeout": "nan"}, "wait_timeout must be from 0 to 600"),
    "request timeout not a number": ({"request_timeout": "nan"}, "request_timeout must be above 0"),
    "request timeout": ({"request_timeout": 0}, "request_timeout must be above 0"),
    "unknown check": ({"checks": ["contract", "speed"]}, "checks"),
    "empty checks": ({"checks": []}, "checks must name at least one check"),
    "follower without payment": ({"checks": ["idempotency", "webhooks"]},
                                 "the idempotency, webhooks check(s) follow the smoke payments"),
    "no api key": ({"api_key": None}, "api_key is required by the admin_role, payment, invoice check(s)"),
    "no smoke key": ({"smoke_key": None}, "smoke_key is required by the rate_limit check(s)"),
    "no stripe key": ({"stripe_api_key": None},
                      "stripe_api_key is required by the stripe_record, refund, invoice check(s)"),
    "admin key is the api key": ({"admin_key": API_KEY}, "admin_key must differ from api_key"),
    "publishable stripe key": ({"stripe_api_key": "pk_test_" + "d" * 24},
                               "stripe_api_key pk_test_\u2026dddd is not a Stripe secret"),
    "key with whitespace": ({"smoke_key": "two words"}, "smoke_key must not contain whitespace"),
    "blank expected version": ({"expected_version": " "}, "expected_version must be a version"),
}


@pytest.mark.parametrize("change,expected", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_fails_before_any_request(world: World, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch, change: dict[str, t.Any],
                                            expected: str) -> None:
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    args = {k: v for k, v in dict(smoke_args(world), **change).items() if v is not None}
    before = (len(world.service.requests), len(world.stripe.requests))
    result = run(smoke_test, capsys, args)
    assert result["failed"] is True
    assert expected in result["msg"]
    assert (len(world.service.requests), len(world.stripe.requests)) == before
    for secret in (API_KEY, ADMIN_KEY, SMOKE_KEY, TEST_KEY, LIVE_KEY, PASSWORD):
        assert secret not in result["_raw"]


def test_all_problems_are_reported_together(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    args = smoke_args(world, payment_amount=500, currency="EUR", run_id="", rate_limit_attempts=0, smoke_key=API_KEY)
    result = run(smoke_test, capsys, args)
    assert result["msg"].startswith("invalid options, nothing was sent: ")
    assert len(result["problems"]) == 5 and result["checks"] == [] and result["changed"] is False
    assert world.service.requests == [] and world.stripe.requests == []


def test_the_stripe_key_may_come_from_the_environment(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world()
    try:
        monkeypatch.setenv("STRIPE_SECRET_KEY", TEST_KEY)
        args = smoke_args(world, payment_count=2)
        del args["stripe_api_key"]
        result = run(smoke_test, capsys, args)
    finally:
        world.close()
    assert not result.get("failed"), result["msg"]
    assert TEST_KEY not in result["_raw"]


def test_redactor_hides_keys_cards_and_stripe_secrets() -> None:
    redactor = Redactor({"api_key": API_KEY, "smoke_key": SMOKE_KEY})
    text = (f"Bearer {API_KEY} then {SMOKE_KEY}, {LIVE_KEY}, whsec_abc123XYZ, "
            "card 4242 4242 4242 4242 or 4000000000000002")
    shown = redactor.text(text)
    assert shown == ("Bearer <api_key> then <smoke_key>, sk_live_\u2026l1ve, whsec_\u2026, "
                     "card <card number> or <card number>")
    assert redactor.deep({"a": [text], text: 1}) == {"a": [shown], shown: 1}
    for kept in ("pay_0123456789abcdef01234567 for 50 usd", "run 1767261600123 of 4242424242424241"):
        assert redactor.text(kept) == kept

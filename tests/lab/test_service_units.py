"""The reference service's unit suite: its pure logic (configuration, validation, error shapes), no server started.

The lab's release run (lab/release_attestation.py) runs this file as the release's ``unit`` suite.
"""

from __future__ import annotations

import hashlib

import pytest
from service_source import environ, load

config = load("config")
validation = load("validation")
web = load("web")


def test_a_complete_environment_is_read_as_it_is() -> None:
    settings = config.load_settings(environ(PAYMENTS_RATE_LIMIT_PER_MINUTE="42",
                                            PAYMENTS_CORS_ORIGINS="https://shop.example.com/, http://127.0.0.1:8080"))
    assert settings.rate_limit_per_minute == 42
    assert settings.cors_origins == frozenset({"https://shop.example.com", "http://127.0.0.1:8080"})
    assert settings.colour == "blue"
    assert settings.stripe_api_base == config.DEFAULT_STRIPE_API_BASE


@pytest.mark.parametrize("name", config.REQUIRED)
def test_a_missing_required_variable_is_named(name: str) -> None:
    with pytest.raises(config.ConfigError, match=name):
        config.load_settings(environ(**{name: ""}))


@pytest.mark.parametrize("name, value", [
    ("DATABASE_URL", "mysql://127.0.0.1/payments"),
    ("REDIS_URL", "http://127.0.0.1:6379"),
    ("ENCRYPTION_KEY", "not-hex"),
    ("SERVICE_COLOUR", "purple"),
    ("PAYMENTS_RATE_LIMIT_PER_MINUTE", "-1"),
    ("STRIPE_API_BASE", "https://user:pw@api.stripe.com"),
    ("SMTP_URL", "http://mail.example.com"),
])
def test_a_malformed_variable_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(config.ConfigError, match=name) as raised:
        config.load_settings(environ(**{name: value}))
    assert value not in str(raised.value) or len(value) < 4


def test_smtp_url_is_taken_apart_with_its_default_port() -> None:
    settings = config.load_settings(environ(SMTP_URL="smtp+starttls://mailer:p%40ss@mail.example.com",
                                            PAYMENTS_RECEIPT_FROM="receipts@example.com"))
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.starttls) == ("mail.example.com", 587, True)
    assert settings.smtp.password == "p@ss"


@pytest.mark.parametrize("value, expected", [(50, 50), (99_999_999, 99_999_999)])
def test_amounts_at_stripes_limits_are_accepted(value: int, expected: int) -> None:
    assert validation.amount(value) == expected


@pytest.mark.parametrize("value", [49, 100_000_000, 10.5, True, "100", None])
def test_amounts_outside_stripes_limits_are_refused(value: object) -> None:
    with pytest.raises(web.HTTPError) as raised:
        validation.amount(value)
    assert raised.value.status == 400


def test_currency_is_lower_cased_and_checked() -> None:
    assert validation.currency("EUR") == "eur"
    with pytest.raises(web.HTTPError):
        validation.currency("euro")


def test_stripe_ids_need_their_prefix() -> None:
    assert validation.stripe_id("pm_card_visa", "payment_method", "pm_") == "pm_card_visa"
    for bad in ("pm_", "cus_123", "pm_a;b", "pm_" + "x" * 300):
        with pytest.raises(web.HTTPError):
            validation.stripe_id(bad, "payment_method", "pm_")


def test_derived_ids_are_stable_and_differ_by_key() -> None:
    first = validation.derived_id("pay", "api:key-1")
    assert first == validation.derived_id("pay", "api:key-1")
    assert first != validation.derived_id("pay", "api:key-2")
    assert first == "pay_" + hashlib.sha256(b"api:key-1").hexdigest()[:24]


def test_unknown_and_missing_fields_are_named() -> None:
    with pytest.raises(web.HTTPError, match="unknown field"):
        validation.fields({"amount": 100, "extra": 1}, frozenset({"amount"}))
    with pytest.raises(web.HTTPError, match="missing field"):
        validation.fields({}, frozenset({"amount"}))


@pytest.mark.parametrize("status, kind", [(401, "authentication_error"), (402, "card_error"), (429, "rate_limit_error"),
                                          (400, "invalid_request_error"), (503, "api_error")])
def test_error_types_follow_stripes(status: int, kind: str) -> None:
    assert web.error_type(status) == kind

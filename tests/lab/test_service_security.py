"""The reference service's security suite: bearer-token roles, secret redaction, CORS and security headers, tested on
its source without a server.

The lab's release run (lab/release_attestation.py) runs this file as the release's ``security`` suite.
"""

from __future__ import annotations

import io
import logging

import pytest
from service_source import environ, load

auth = load("auth")
config = load("config")
cors = load("cors")
logs = load("logs")
web = load("web")

SETTINGS = config.load_settings(environ(PAYMENTS_CORS_ORIGINS="https://shop.example.com"))


def request(token: str | None = None, scheme: str = "Bearer", **headers: str) -> object:
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/payments", "wsgi.input": io.BytesIO(b"")}
    if token is not None:
        env["HTTP_AUTHORIZATION"] = f"{scheme} {token}"
    env.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    return web.Request(env)


@pytest.mark.parametrize("key, role, limiter", [
    ("api_key", auth.API, auth.API_LIMITER),
    ("smoke_key", auth.API, auth.SMOKE_LIMITER),
    ("admin_key", auth.ADMIN, auth.ADMIN),
])
def test_each_key_grants_its_role_and_limiter(key: str, role: str, limiter: str) -> None:
    credential = auth.identify(request(getattr(SETTINGS, key)), SETTINGS)
    assert (credential.role, credential.limiter) == (role, limiter)


@pytest.mark.parametrize("token, scheme", [
    (None, "Bearer"),
    ("", "Bearer"),
    ("api-key-aaaaaaaaaaaaaaa", "Bearer"),       # one character short
    ("api-key-aaaaaaaaaaaaaaaaX", "Bearer"),     # one character more
    ("api-key-aaaaaaaaaaaaaaaa", "Basic"),
])
def test_anything_but_a_known_bearer_token_grants_nothing(token: str | None, scheme: str) -> None:
    assert auth.identify(request(token, scheme), SETTINGS) is None


def test_an_empty_configured_key_never_matches_an_empty_token() -> None:
    settings = config.load_settings(environ(PAYMENTS_ADMIN_KEY="", PAYMENTS_SMOKE_KEY=""))
    assert auth.identify(request(" "), settings) is None


@pytest.mark.parametrize("name, value", [("PAYMENTS_ADMIN_KEY", "api-key-aaaaaaaaaaaaaaaa"),
                                         ("PAYMENTS_SMOKE_KEY", "admin-key-bbbbbbbbbbbbbbbb")])
def test_roles_cannot_share_a_key(name: str, value: str) -> None:
    with pytest.raises(config.ConfigError, match=name):
        config.load_settings(environ(**{name: value}))


def test_every_secret_and_url_password_is_redacted_from_log_lines() -> None:
    secrets = SETTINGS.secret_values()
    assert {"db-pass-4711", "redis-pass-0815", "sk_test_eeeeeeeeeeeeeeee"} <= set(secrets)
    stream = io.StringIO()
    logger = logging.getLogger("payment_service.security_suite")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.RedactingFormatter(secrets))
    logger.addHandler(handler)
    try:
        logger.error("connect %s with %s failed", SETTINGS.database_url, SETTINGS.stripe_secret_key)
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert logs.MASK in line
    assert not [secret for secret in secrets if secret in line]


def test_a_longer_secret_is_masked_before_a_secret_inside_it() -> None:
    assert logs.redact("token abc123xyz", ["abc", "abc123xyz"]) == f"token {logs.MASK}"


def test_a_wildcard_cors_origin_is_refused() -> None:
    with pytest.raises(config.ConfigError, match="PAYMENTS_CORS_ORIGINS"):
        config.load_settings(environ(PAYMENTS_CORS_ORIGINS="*"))


def test_cors_allows_only_the_configured_origin_on_the_api() -> None:
    allowed = dict(cors.headers(SETTINGS, request(Origin="https://shop.example.com"), "/v1/payments"))
    assert allowed["Access-Control-Allow-Origin"] == "https://shop.example.com"
    other = dict(cors.headers(SETTINGS, request(Origin="https://evil.example.com"), "/v1/payments"))
    assert "Access-Control-Allow-Origin" not in other
    assert cors.headers(SETTINGS, request(Origin="https://shop.example.com"), "/admin/reconcile") == []


def test_security_headers_forbid_sniffing_framing_caching_and_plain_http() -> None:
    headers = dict(web.SECURITY_HEADERS)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "no-store" in headers["Cache-Control"]
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert int(headers["Strict-Transport-Security"].split("max-age=")[1].split(";")[0]) >= 31536000

"""Unit tests of secret_quality_info: verdicts on generated secrets, and no value (nor a piece of one) in any output."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import typing as t
from urllib.parse import urlsplit

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.modules import secret_quality_info

DB_CA = "sslrootcert=/etc/payments/db-ca.pem"


def strong_env() -> dict[str, str]:
    """A production environment that passes: fresh random values every run."""
    return {
        "HASH_SALT": secrets.token_hex(32),
        "DATABASE_URL": f"postgresql://payments:{secrets.token_urlsafe(24)}@db1.example.test:5432/payments?sslmode=verify-full&{DB_CA}",
        "REDIS_URL": f"rediss://:{secrets.token_urlsafe(24)}@cache.example.test:6380/0?ssl_cert_reqs=required",
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(24),
    }


def run(capsys: pytest.CaptureFixture[str], env: dict[str, str], **args: t.Any) -> tuple[dict[str, t.Any], str]:
    with patch_module_args({"env": env, "environment": "production", **args}), pytest.raises(SystemExit):
        secret_quality_info.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def secret_parts(env: dict[str, str]) -> list[str]:
    """The secret part of each value (a URL's password, the whole of anything else) long enough to be random: a
    default such as postgres may be named by the message that refuses it."""
    parts = []
    for value in env.values():
        split = urlsplit(value)
        parts.append(split.password or "" if split.scheme else value)
    return [part for part in parts if len(part) >= 10]


def assert_no_secret_in(out: str, env: dict[str, str]) -> None:
    """Neither a secret nor any 6 characters of one is in the module's output."""
    for secret in secret_parts(env):
        pieces = {secret[i:i + 6] for i in range(max(1, len(secret) - 5))}
        assert not [piece for piece in pieces if piece in out], secret


def test_strong_secrets_pass_without_showing_them(capsys: pytest.CaptureFixture[str]) -> None:
    env = strong_env()
    result, out = run(capsys, env)
    assert result["problems"] == [] and result["passed"] is True and result["strict"] is True
    assert all(verdict == {"passed": True, "problems": []} for verdict in result["verdicts"].values())
    assert sorted(result["verdicts"]) == sorted(env)
    assert_no_secret_in(out, env)


@pytest.mark.parametrize("salt", [
    base64.b64encode(secrets.token_bytes(32)).decode(),
    base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),
    secrets.token_urlsafe(32),
    "".join(secrets.choice(string.ascii_letters + string.digits + "!#%&*+-") for position in range(32)),
    "".join(secrets.choice(string.ascii_letters + string.digits) for position in range(32)),
])
def test_salt_forms_that_hold_32_bytes(capsys: pytest.CaptureFixture[str], salt: str) -> None:
    result = run(capsys, {"HASH_SALT": salt}, checks=["HASH_SALT"])[0]
    assert result["problems"] == []


@pytest.mark.parametrize(("salt", "reason"), [
    ("", "HASH_SALT is empty"),
    ("changeme", "HASH_SALT is a known default or placeholder"),
    ("Secret", "HASH_SALT is a known default or placeholder"),
    ("test", "HASH_SALT is a known default or placeholder"),
    ("salt", "HASH_SALT is a known default or placeholder"),
    ("CHANGE_ME_64_HEX_CHARACTERS", "HASH_SALT is a known default or placeholder"),
    ("0" * 64, "HASH_SALT is a known default or placeholder"),
    (secrets.token_hex(16), "HASH_SALT holds about 16 bytes of randomness, fewer than the 32 required"),
    (base64.b64encode(secrets.token_bytes(20)).decode(), "HASH_SALT holds about 20 bytes of randomness"),
    (secrets.token_urlsafe(18), "HASH_SALT holds about 24 bytes of randomness"),
    ("0123456789abcdef" * 4, "HASH_SALT does not look random"),
    ("aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd!", "HASH_SALT does not look random"),
])
def test_weak_salts_are_refused(capsys: pytest.CaptureFixture[str], salt: str, reason: str) -> None:
    result, out = run(capsys, {"HASH_SALT": salt}, checks=["HASH_SALT"])
    assert result["passed"] is False
    assert result["problems"][0].startswith(reason), result["problems"]
    assert result["verdicts"]["HASH_SALT"]["passed"] is False
    if len(salt) >= 8:
        assert salt not in out


def test_a_lab_sized_salt_passes_outside_production_only(capsys: pytest.CaptureFixture[str]) -> None:
    salt = secrets.token_hex(16)
    assert run(capsys, {"HASH_SALT": salt}, checks=["HASH_SALT"], environment="staging")[0]["problems"] == []
    assert not run(capsys, {"HASH_SALT": salt}, checks=["HASH_SALT"], environment="staging", strict=True)[0]["passed"]
    assert not run(capsys, {"HASH_SALT": "salt"}, checks=["HASH_SALT"], environment="staging")[0]["passed"]


def test_a_salt_shared_with_another_environment_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    salt = secrets.token_hex(32)
    shared = hashlib.sha256(salt.encode()).hexdigest()
    others = {"staging": [hashlib.sha256(b"another").hexdigest(), shared.upper()], "qa": hashlib.sha256(b"qa").hexdigest()}
    result, out = run(capsys, {"HASH_SALT": salt}, checks=["HASH_SALT"], other_hash_salt_sha256=others)
    assert result["problems"] == ["HASH_SALT is the same as staging's: each environment needs its own, or a leak of "
                                  "staging's lets its e-mail hashes be matched against this one's"]
    assert shared not in out and salt not in out
    result = run(capsys, {"HASH_SALT": salt}, checks=["HASH_SALT"], other_hash_salt_sha256={"staging": others["qa"]})[0]
    assert result["passed"] is True


def db_url(user: str = "payments", password: str | None = None, query: str = f"sslmode=verify-full&{DB_CA}") -> str:
    password = secrets.token_urlsafe(24) if password is None else password
    return f"postgresql://{user}:{password}@db1.example.test:5432/payments?{query}"


@pytest.mark.parametrize(("url", "reasons"), [
    (db_url("postgres", "postgres"), ["DATABASE_URL uses the image's default credentials (postgres/postgres)",
                                      "DATABASE_URL logs in as the superuser postgres"]),
    (db_url(password="password"), ["DATABASE_URL uses a known default password"]),
    (db_url(password="payments"), ["DATABASE_URL uses a known default password"]),
    (db_url(password=""), ["DATABASE_URL has no password"]),
    (db_url(password="Zq8#kL2m"), ["DATABASE_URL has a password of 8 characters, fewer than the 16 required"]),
    (db_url(query="sslmode=require"), ["DATABASE_URL has sslmode=require: use verify-full (or verify-ca)"]),
    (db_url(query=""), ["DATABASE_URL has sslmode=prefer: use verify-full"]),
    ("postgresql://u:p@h:port/db", ["DATABASE_URL has a port that is not a number"]),
    ("mysql://payments:x@db/payments", ["DATABASE_URL must be a postgresql://"]),
])
def test_database_urls(capsys: pytest.CaptureFixture[str], url: str, reasons: list[str]) -> None:
    result, out = run(capsys, {"DATABASE_URL": url}, checks=["DATABASE_URL"])
    assert len(result["problems"]) == len(reasons), result["problems"]
    for problem, reason in zip(result["problems"], reasons):
        assert problem.startswith(reason)
    assert_no_secret_in(out, {"url": url})


def test_database_url_outside_production(capsys: pytest.CaptureFixture[str]) -> None:
    plain_short = db_url(password="Zq8#kL2m", query="")
    assert run(capsys, {"DATABASE_URL": plain_short}, checks=["DATABASE_URL"], environment="staging")[0]["passed"] is True
    still_default = run(capsys, {"DATABASE_URL": db_url("postgres", "postgres", "")}, checks=["DATABASE_URL"], environment="staging")[0]
    assert still_default["problems"] == ["DATABASE_URL uses the image's default credentials (postgres/postgres)"]
    verify_ca = run(capsys, {"DATABASE_URL": db_url(query=f"sslmode=verify-ca&{DB_CA}")}, checks=["DATABASE_URL"])[0]
    assert verify_ca["passed"] is True


def redis_url(scheme: str = "rediss", userinfo: str | None = None, query: str = "ssl_cert_reqs=required") -> str:
    userinfo = f":{secrets.token_urlsafe(24)}@" if userinfo is None else userinfo
    return f"{scheme}://{userinfo}cache.example.test:6380/0?{query}"


@pytest.mark.parametrize(("url", "reasons"), [
    (redis_url(userinfo=""), ["REDIS_URL has no password"]),
    (redis_url(userinfo="default:redis@"), ["REDIS_URL uses a known default password"]),
    (redis_url(userinfo=":short-pass-1@"), ["REDIS_URL has a password of 12 characters, fewer than the 16 required"]),
    (redis_url("redis"), ["REDIS_URL uses redis://: use rediss://"]),
    (redis_url(query="ssl_cert_reqs=none"), ["REDIS_URL turns off certificate verification"]),
    (redis_url("http"), ["REDIS_URL must be a redis://, rediss:// or unix:// URL (its scheme is http)"]),
])
def test_redis_urls(capsys: pytest.CaptureFixture[str], url: str, reasons: list[str]) -> None:
    result, out = run(capsys, {"REDIS_URL": url}, checks=["REDIS_URL"])
    assert len(result["problems"]) == len(reasons), result["problems"]
    for problem, reason in zip(result["problems"], reasons):
        assert problem.startswith(reason)
    assert_no_secret_in(out, {"url": url})


def test_redis_url_outside_production_needs_a_password_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, {"REDIS_URL": redis_url("redis", query="")}, checks=["REDIS_URL"], environment="staging")[0]["passed"]
    result = run(capsys, {"REDIS_URL": "redis://127.0.0.1:6379/0"}, checks=["REDIS_URL"], environment="staging")[0]
    assert result["problems"][0].startswith("REDIS_URL has no password")
    query_password = run(capsys, {"REDIS_URL": redis_url(userinfo="", query="password=" + secrets.token_urlsafe(24))},
                         checks=["REDIS_URL"])[0]
    assert query_password["passed"] is True


@pytest.mark.parametrize(("secret", "reason"), [
    ("", "STRIPE_WEBHOOK_SECRET is empty"),
    ("sk_live_" + secrets.token_urlsafe(24), "STRIPE_WEBHOOK_SECRET does not start with whsec_"),
    ("whsec_CHANGE_ME", "STRIPE_WEBHOOK_SECRET is a placeholder or too short"),
    ("whsec_abc", "STRIPE_WEBHOOK_SECRET is a placeholder or too short"),
])
def test_webhook_secrets(capsys: pytest.CaptureFixture[str], secret: str, reason: str) -> None:
    result, out = run(capsys, {"STRIPE_WEBHOOK_SECRET": secret}, checks=["STRIPE_WEBHOOK_SECRET"])
    assert result["problems"] and result["problems"][0].startswith(reason)
    if len(secret) > 8:
        assert secret[6:] not in out


def test_every_problem_at_once_and_nothing_shown(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"HASH_SALT": secrets.token_hex(8), "DATABASE_URL": db_url(query="sslmode=disable"),
           "REDIS_URL": redis_url("redis"), "STRIPE_WEBHOOK_SECRET": secrets.token_hex(20)}
    result, out = run(capsys, env)
    assert [name for name, verdict in result["verdicts"].items() if not verdict["passed"]] == list(env)
    assert len(result["problems"]) == 4
    assert_no_secret_in(out, env)


def test_unset_variables(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {})[0]
    assert result["problems"] == ["HASH_SALT is not set", "DATABASE_URL is not set", "REDIS_URL is not set",
                                  "STRIPE_WEBHOOK_SECRET is not set"]


@pytest.mark.parametrize(("args", "message"), [
    ({"other_hash_salt_sha256": {"staging": "abc"}}, "other_hash_salt_sha256.staging must be a sha256"),
    ({"min_salt_bytes": 4}, "min_salt_bytes must be from 8 to 1024"),
    ({"min_password_length": 2}, "min_password_length must be from 8 to 1024"),
    ({"checks": ["PASSWORD"]}, "value of checks must be one or more of"),
])
def test_bad_options(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], message: str) -> None:
    result = run(capsys, strong_env(), **args)[0]
    assert result["failed"] is True and message in result["msg"]


def test_check_mode_judges_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    env = {**strong_env(), "HASH_SALT": "changeme"}
    assert run(capsys, env, _ansible_check_mode=True)[0]["problems"] == run(capsys, env)[0]["problems"] == [
        "HASH_SALT is a known default or placeholder: generate one with `openssl rand -hex 32`"]

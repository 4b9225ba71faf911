"""Unit tests of cache_namespace_clear: its arguments are checked before it connects; SCAN + UNLINK in batches."""

from __future__ import annotations

import fnmatch
import json
import socket
import typing as t

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.modules import cache_namespace_clear

URL = "redis://:s3cret-pass@127.0.0.1:6379/0"


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], check: bool = False) -> dict[str, t.Any]:
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        cache_namespace_clear.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the module tries to reach Redis."""
    def refuse(*_args: t.Any, **_kwargs: t.Any) -> t.NoReturn:
        raise AssertionError("the module connected to Redis")
    monkeypatch.setattr(cache_namespace_clear.redis.Redis, "from_url", refuse)


@pytest.mark.parametrize(("namespace", "error"), [
    ("", "must not be empty"),
    ("   ", "must not be empty"),
    ("*", "glob character"),
    ("payments:*", "glob character"),
    ("payments:1.?.0", "glob character"),
    ("payments:[12]", "glob character"),
    (":", "only separators"),
    ("::", "only separators"),
    (" payments:1.1.0", "white space"),
])
def test_a_namespace_that_could_clear_other_keys_is_refused_before_connecting(
        capsys: pytest.CaptureFixture[str], no_connection: None, namespace: str, error: str) -> None:
    result = run(capsys, {"url": URL, "namespace": namespace})
    assert result["failed"] and error in result["msg"], result


@pytest.mark.parametrize(("args", "error"), [
    ({"batch_size": 0}, "batch_size must be between 1 and 10000"),
    ({"batch_size": 10001}, "batch_size must be between 1 and 10000"),
    ({"timeout": 0}, "timeout must be more than 0 and at most 300 seconds"),
    ({"timeout": "nan"}, "timeout must be more than 0 and at most 300 seconds"),
    ({"timeout": "inf"}, "timeout must be more than 0 and at most 300 seconds"),
    ({"url": "http://127.0.0.1:6379"}, "url must be a redis://"),
    ({"separator": ""}, "separator must not be empty"),
])
def test_bad_options_are_refused_before_connecting(capsys: pytest.CaptureFixture[str], no_connection: None,
                                                   args: dict[str, t.Any], error: str) -> None:
    result = run(capsys, {"url": URL, "namespace": "payments:1.1.0", **args})
    assert result["failed"] and error in result["msg"], result


def test_every_problem_is_named_at_once(capsys: pytest.CaptureFixture[str], no_connection: None) -> None:
    result = run(capsys, {"url": "tcp://x", "namespace": "*", "batch_size": -1})
    assert [p for p in ("glob character", "batch_size", "url must be") if p not in result["msg"]] == []


def test_url_and_password_are_required_and_never_shown(capsys: pytest.CaptureFixture[str]) -> None:
    missing = run(capsys, {"namespace": "payments:1.1.0"})
    assert missing["failed"] and "url" in missing["msg"]
    with socket.socket() as sock:  # a port nothing listens on: the connection is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(capsys, {"url": f"redis://:s3cret-pass@127.0.0.1:{port}/0", "password": "other-s3cret",
                          "namespace": "payments:1.1.0", "timeout": 1})
    assert result["failed"] and "clearing payments:1.1.0:* failed" in result["msg"]
    assert "s3cret" not in json.dumps(result)


def test_without_the_redis_library_it_says_what_to_install(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_namespace_clear, "REDIS_IMPORT_ERROR", "ImportError: No module named 'redis'")
    result = run(capsys, {"url": URL, "namespace": "payments:1.1.0"})
    assert result["failed"] and "redis" in result["msg"] and "required" in result["msg"]


def test_the_pattern_is_the_literal_namespace_and_its_separator() -> None:
    assert cache_namespace_clear.match_pattern("payments:1.1.0", ":") == "payments:1.1.0:*"
    assert cache_namespace_clear.match_pattern("a\\b", "/") == "a\\\\b/*"


class FakeRedis:
    """SCAN (with MATCH and COUNT, several pages) and UNLINK over a set, recording the calls. Like Redis, deleting
    keys during a scan does not make it skip others (the cursor walks the keyspace as it was at cursor 0)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = {k.encode() for k in keys}
        self.unlinks: list[int] = []
        self.walk: list[bytes] = []

    def scan(self, cursor: int, match: str, count: int) -> tuple[int, list[bytes]]:
        if cursor == 0:
            self.walk = sorted(self.keys)
        ordered = self.walk
        page = [k for k in ordered[cursor:cursor + count] if k in self.keys]
        following = cursor + count if cursor + count < len(ordered) else 0
        return following, [k for k in page if fnmatch.fnmatchcase(k.decode(), match.replace("\\", ""))]

    def unlink(self, *keys: bytes) -> int:
        self.unlinks.append(len(keys))
        removed = self.keys & set(keys)
        self.keys -= removed
        return len(removed)


def test_keys_are_unlinked_in_batches_and_other_namespaces_are_kept() -> None:
    keys = [f"payments:1.1.0:customer:v1:cus_{n}" for n in range(7)] + ["payments:1.0.0:customer:v1:cus_1",
                                                                        "payments:1.1.0", "payments:1.1.00:x"]
    fake = FakeRedis(keys)
    counted = cache_namespace_clear.clear(fake, "payments:1.1.0", ":", 3, check_mode=True)
    assert (counted["matched"], counted["deleted"], fake.unlinks) == (7, 0, [])
    result = cache_namespace_clear.clear(fake, "payments:1.1.0", ":", 3, check_mode=False)
    assert (result["matched"], result["deleted"]) == (7, 7)
    assert all(n <= 3 for n in fake.unlinks) and sum(fake.unlinks) == 7
    assert sorted(k.decode() for k in fake.keys) == ["payments:1.0.0:customer:v1:cus_1", "payments:1.1.0",
                                                     "payments:1.1.00:x"]
    assert cache_namespace_clear.clear(fake, "payments:1.1.0", ":", 3, check_mode=False)["deleted"] == 0

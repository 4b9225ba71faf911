"""Unit tests of the pgBackRest modules' decisions: which backup the ages call for, age parsing, and inputs refused
before any command runs. The commands themselves run against real PostgreSQL and pgBackRest in
tests/integration/pgbackrest."""

from __future__ import annotations

import json
import typing as t

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _pgbackrest as pgbr
from ansible_collections.payments.deploy.plugins.modules import pgbackrest_backup, pgbackrest_stanza

HOUR = 3600.0
DAY = 24 * HOUR
AGES = {"full": 7 * DAY, "diff": DAY, "incr": HOUR}


def backup(kind: str, stopped_ago: float, now: float, error: bool = False) -> dict[str, t.Any]:
    return {"type": kind, "timestamp": {"start": now - stopped_ago - 60, "stop": now - stopped_ago}, "error": error, "label": f"{kind}-{stopped_ago}"}


@pytest.mark.parametrize(("history", "expected"), [
    ([], "full"),
    ([("full", 8 * DAY)], "full"),
    ([("full", 2 * DAY)], "diff"),
    ([("full", 2 * DAY), ("diff", 2 * HOUR)], "incr"),
    ([("full", 2 * DAY), ("diff", 2 * HOUR), ("incr", 10 * 60)], None),
    ([("full", 20 * 60)], None),
    ([("full", 8 * DAY), ("diff", 60)], "full"),
])
def test_the_ages_decide_the_backup(history: list[tuple[str, float]], expected: str | None) -> None:
    now = 2_000_000_000.0
    kind, reason = pgbr.choose_backup_type([backup(k, ago, now) for k, ago in history], now, AGES)
    assert kind == expected
    assert reason


def test_a_failed_backup_does_not_count() -> None:
    now = 2_000_000_000.0
    assert pgbr.choose_backup_type([backup("full", 2 * DAY, now), backup("diff", 60, now, error=True)], now, AGES)[0] == "diff"


def test_an_incremental_every_deploy_with_age_zero() -> None:
    now = 2_000_000_000.0
    assert pgbr.choose_backup_type([backup("full", 1, now)], now, {**AGES, "incr": 0.0})[0] == "incr"


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("30m", 1800.0), ("12h", 43200.0), ("7d", 604800.0), ("2w", 1209600.0), (0, 0.0)])
def test_ages(text: str, seconds: float) -> None:
    assert pgbr.parse_age(text, "age") == seconds


@pytest.mark.parametrize("text", ["a week", "-1d", "7 days", "1y", ""])
def test_bad_ages(text: str) -> None:
    with pytest.raises(pgbr.PgBackRestError, match="is not an age"):
        pgbr.parse_age(text, "age")


@pytest.fixture
def no_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise AssertionError("no command may run")

    monkeypatch.setattr(pgbr.subprocess, "run", forbidden)


def run(capsys: pytest.CaptureFixture[str], module: t.Any, args: dict[str, t.Any]) -> dict[str, t.Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.usefixtures("no_commands")
@pytest.mark.parametrize(("args", "message"), [
    ({"full_max_age": "one week"}, "full_max_age"),
    ({"restore_point": "deploy-" + "r" * 57}, "63 bytes"),
    ({"os_user": "no-such-user-here"}, "no such user"),
])
def test_backup_inputs_refused_before_any_command(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], message: str) -> None:
    result = run(capsys, pgbackrest_backup, {"stanza": "payments", "cipher_pass": "secret-cipher-pass", **args})
    assert result["failed"] is True and message in result["msg"]
    assert result["commands"] == []
    assert "secret-cipher-pass" not in json.dumps(result)


def test_archive_command_quotes_the_paths() -> None:
    params = {"pgbackrest_bin": "/usr/bin/pgbackrest", "config": "/etc/pg backrest/p.conf", "stanza": "payments", "config_include_path": None}
    command = pgbackrest_stanza.archive_command(params)
    assert command.endswith(" archive-push %p")
    assert "'--config=/etc/pg backrest/p.conf'" in command

"""Input patterns refuse a trailing newline: ``$`` matches before a final "\\n", so each pattern ends in ``\\Z``."""

from __future__ import annotations

import json
import re
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _analysis_options as analysis
from ansible_collections.payments.deploy.plugins.module_utils import _backup_store as store_lib
from ansible_collections.payments.deploy.plugins.module_utils import _crypto as crypto
from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg
from ansible_collections.payments.deploy.plugins.module_utils import _smoke_options as smoke
from ansible_collections.payments.deploy.plugins.modules import pg_amcheck, pg_backup, staging_evidence_info

BACKUP_ID = "payments-20260101T000000Z-abcdef"

PATTERNS: list[tuple[str, re.Pattern[str], str]] = [
    ("smoke RUN_ID", smoke.RUN_ID, "deploy-1.2.0@host"),
    ("smoke ORIGIN", smoke.ORIGIN, "https://shop.example.com:8443"),
    ("smoke EMAIL", smoke.EMAIL, "smoke@example.com"),
    ("smoke CURRENCY", smoke.CURRENCY, "usd"),
    ("smoke PAYMENT_METHOD", smoke.PAYMENT_METHOD, "pm_card_visa"),
    ("analysis NAME", analysis.NAME, "error_rate"),
    ("analysis LABEL_NAME", analysis.LABEL_NAME, "colour"),
    ("crypto KEY_HEX", crypto.KEY_HEX, "0f" * 32),
    ("store PLAIN_NAME", store_lib.PLAIN_NAME, "payments"),
    ("store BACKUP_ID", store_lib.BACKUP_ID, BACKUP_ID),
    ("store SHA256_HEX", store_lib.SHA256_HEX, "ab" * 32),
    ("store KEY_ID_HEX", store_lib.KEY_ID_HEX, "ab" * 8),
    ("pg_backup QUALIFIED_NAME", pg_backup.QUALIFIED_NAME, "payments_deploy.changes"),
    ("pg_amcheck LOCK_TIMEOUT", pg_amcheck.LOCK_TIMEOUT, "10s"),
    ("staging_evidence_info _NAME", staging_evidence_info._NAME, "staging"),  # pylint: disable=protected-access
]


@pytest.mark.parametrize(("name", "pattern", "good"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_pattern_takes_the_value_but_not_with_a_trailing_newline(name: str, pattern: re.Pattern[str], good: str) -> None:
    assert pattern.match(good), name
    assert pattern.match(good + "\n") is None, name


def test_store_checks_refuse_a_trailing_newline() -> None:
    assert store_lib.plain_name_problem("target_db", "payments") is None
    assert store_lib.plain_name_problem("target_db", "payments\n") == (
        "target_db 'payments\\n' is not a plain database name (letters, digits, '_', '.' and '-')")
    assert store_lib.is_backup_id(BACKUP_ID) and not store_lib.is_backup_id(BACKUP_ID + "\n")


def test_smoke_options_refuse_a_trailing_newline() -> None:
    params = {"run_id": "run-1\n", "currency": "usd\n", "payment_method": "pm_card_visa\n",
              "customer_email": "smoke@example.com\n", "cors_foreign_origin": "https://smoke-test.invalid\n"}
    problems = smoke._text_problems(params)  # pylint: disable=protected-access
    assert [p.split()[0] for p in problems] == ["run_id", "currency", "payment_method", "customer_email",
                                                "cors_foreign_origin"]


def test_pg_backup_refuses_a_registry_table_with_a_trailing_newline(capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    def forbidden(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise AssertionError("nothing may connect")

    monkeypatch.setattr(pg.psycopg, "connect", forbidden)
    args = {"db": "payments", "encryption_key": "0f" * 32, "dest_dir": str(tmp_path),
            "migration_registry_table": "payments_deploy.changes\n"}
    with patch_module_args(args), pytest.raises(SystemExit):
        pg_backup.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    assert "migration_registry_table 'payments_deploy.changes\\n' must be 'table' or 'schema.table'" in result["msg"]

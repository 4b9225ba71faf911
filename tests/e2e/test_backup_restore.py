"""A deploy backs up the database first; restore.yml brings it back without losing a payment made since."""
from __future__ import annotations

import pytest

from helpers import journal, live, query, smoke_payments, versions_or_nothing

pytestmark = pytest.mark.timeout(900)


def test_deploy_takes_a_verified_encrypted_backup(lab, playbook):
    # From 1.0.0 (with its schema) to 1.1.0: the backup holds a database the previous release runs on.
    if versions_or_nothing(lab["production_url"]) != {"1.0.0"}:
        assert playbook("deploy.yml", "-e", "release_version=1.0.0").rc == 0
    run = playbook("deploy.yml", "-e", "release_version=1.1.0")
    assert run.rc == 0
    backup = journal(lab, "deploy")["backup"]
    assert backup["id"] and len(backup["sha256"]) == 64 and backup["created"] > 0
    assert any(location.startswith("s3://payments-backups/production/postgres/") for location in backup["locations"])


def test_restore_keeps_the_current_database_and_reingests_payments_since(lab, playbook):
    record = journal(lab, "deploy")
    probe_intents = set(smoke_payments(record))  # made after the backup: only Stripe and the events know them
    assert probe_intents
    run = playbook("restore.yml")
    assert run.rc == 0, run.output[-3000:]
    kept = [row[0] for row in query(lab, "SELECT datname FROM pg_database WHERE datname LIKE 'payments_before_restore_%'",
                                    "postgres")]
    assert kept, "the replaced database was not kept"
    stored = {row[0] for row in query(lab, "SELECT payload->'data'->'object'->>'id' FROM stripe_events "
                                           "WHERE type = 'payment_intent.succeeded'")}
    assert probe_intents <= stored, "payments made after the backup were lost by the restore"
    assert live(lab["production_url"])[0] == {"1.1.0"}

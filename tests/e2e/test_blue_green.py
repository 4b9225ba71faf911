"""Blue-green deploy, rollback and re-deploy on the lab, under load: no request may fail."""
from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from helpers import has_column, journal, journal_dir, live, map_colour, smoke_payments, stripe_intents, versions_or_nothing
from loadgen import LoadGenerator, summarize

pytestmark = pytest.mark.timeout(900)
HERE = Path(__file__).resolve().parent
SWITCH_ANSWER_GRACE_S = 1.0


def under_load(lab: dict, action):
    """Run action() while persistent connections send requests through the production frontend. About 100 requests a
    second: a connection the switch resets fails its next request whatever the rate, and a faster load only takes CPU
    from the deploy (400 a second made a deploy outlast a 300 s bound on a busy 2-core machine). The generator's own
    bounds (14 minutes, 200,000 requests) only stop a runaway."""
    gen = LoadGenerator(lab["production_url"] + "/version", concurrency=4, duration=840, max_requests=200000,
                        pause=0.03)
    with gen:
        result = action()
    samples = gen.stop()
    print(summarize(samples))
    return result, samples


def redis_keys(lab: dict, pattern: str) -> list[bytes]:
    import redis  # pylint: disable=import-outside-toplevel
    client = redis.Redis.from_url(lab["redis_url"], password=lab["secrets"]["redis_password"])
    return list(client.scan_iter(match=pattern, count=500))


def assert_zero_downtime(samples, switched_at: float, old: str, new: str) -> None:
    assert len(samples) > 100, "the load generator sent too few requests to prove anything"
    failed = [s for s in samples if not s.ok]
    assert not failed, f"{len(failed)} requests failed during the switch, first: {failed[:3]}"
    after = [s for s in samples if s.sent > switched_at]
    # switched_at is read once HAProxy has answered the map change: a request sent and answered in between (a
    # descheduled module on a loaded machine: tens of milliseconds, seen once at a load average of 14) already met
    # the new release. Requests answered a little earlier than that must all be the old release's.
    before = [s for s in samples if s.done < switched_at]
    assert after and before, "the load did not span the switch"
    assert {s.version for s in after} == {new}, "a request sent after the switch was answered by the old release"
    versions_before = {s.version for s in before}
    assert old in versions_before and versions_before <= {old, new}
    assert {s.version for s in before if s.done < switched_at - SWITCH_ANSWER_GRACE_S} <= {old}
    assert {s.instance.rsplit("-", 1)[0] for s in after} == {"app1", "app2"}


def test_baseline_release_is_live(lab, playbook):
    if versions_or_nothing(lab["production_url"]) != {"1.0.0"}:  # the bake test leaves 1.0.0 live
        assert playbook("deploy.yml", "-e", "release_version=1.0.0").rc == 0
    if has_column(lab, "payments", "description"):  # a 1.1.0 schema left by an earlier run: back to 1.0.0's
        reset = playbook(str(HERE / "playbooks" / "schema_of_release.yml"), "-e", "schema_head=0002_payments_and_events",
                         "-e", "newest_release=1.1.0")
        assert reset.rc == 0
    assert not has_column(lab, "payments", "description")
    versions, instances = live(lab["production_url"])
    assert versions == {"1.0.0"}
    assert {i.rsplit("-", 1)[0] for i in instances} == {"app1", "app2"}


def test_deploy_switches_every_host_without_dropping_a_request(lab, playbook):
    old_colour = map_colour(lab["haproxy_map_file"])
    run, samples = under_load(lab, lambda: playbook("deploy.yml", "-e", "release_version=1.1.0"))
    assert run.rc == 0
    record = journal(lab, "deploy")
    assert (record["release_from"], record["release_to"]) == ("1.0.0", "1.1.0")
    assert record["colour_from"] == old_colour != record["colour_to"] == map_colour(lab["haproxy_map_file"])
    assert_zero_downtime(samples, float(record["switched_at"]), "1.0.0", "1.1.0")
    versions, instances = live(lab["production_url"])
    assert versions == {"1.1.0"} and {i.rsplit("-", 1)[0] for i in instances} == {"app1", "app2"}
    # "Alerts are functional", checked by the deploy: its synthetic alert reached the lab's receiver.
    [kept] = run.results("Keep the alert check's result")
    check = kept["ansible_facts"]["monitoring_alert_check_result"]
    assert check["delivered"] is True
    check_id = check["check_id"]
    # The switch itself, from the haproxy_switch module's own result: the colour the journal names, on lb1.
    [switched] = run.results(f"Switch the environment to colour {record['colour_to']}")
    assert switched["changed"] and switched["colour"] == record["colour_to"], switched
    with urllib.request.urlopen(f"{lab['alert_receiver_url']}/alerts?alertname=PaymentsDeployAlertCheck") as answer:
        notifications = json.load(answer)["notifications"]
    assert any(alert["labels"].get("check_id") == check_id
               for note in notifications for alert in note["notification"]["alerts"])
    # "Configure SSL certificates": preflight checked the frontend's and the database's certificates, and verification
    # after the switch checked the one the frontend serves over HTTPS (chain to the lab CA, name, days left, protocol).
    [days_left] = re.findall(r"The production frontend serves CN=lb1\.payments\.lab.*?chain verified, name matches,\s+"
                             r"(\d+) days left \(minimum 30\),\s+TLSv1\.[23]", run.text, re.S)
    assert int(days_left) > 30


def test_deploy_migrated_the_schema_and_proved_payments(lab):
    record = journal(lab, "deploy")
    migration = record["migration"]
    assert migration["applied"] == ["0003_payments_description", "0004_payments_created_at_index"]
    assert migration["heads"] == {"before": "0002_payments_and_events", "after": "0004_payments_created_at_index"}
    assert migration["contract_applied"] is False
    assert has_column(lab, "payments", "description")
    # Backed up before the migration: a verified, encrypted dump of 1.0.0's database, in the bucket.
    backup = record["backup"]
    assert backup["id"] and len(backup["sha256"]) == 64 and backup["created"] > 0
    assert backup["migration_head"] == "0002_payments_and_events"
    assert any(location.startswith("s3://payments-backups/production/postgres/") for location in backup["locations"])
    # Smoke payments through the service: on the idle colour before the switch, then through the frontend.
    assert record["smoke"]["passed"] is True
    assert record["staging_gate"]["passed"] is True and record["staging_gate"]["evidence"]["release"] == "1.1.0"
    intents = stripe_intents(lab, smoke_payments(record))
    assert len(intents) == 20
    for intent in intents:
        assert intent.livemode is True and intent.status == "succeeded" and intent.amount == 50
        assert intent.latest_charge.refunded is True
    assert record["smoke"]["frontend"]["latency"]["count"] == 10
    assert record["smoke"]["frontend"]["latency"]["p95"] < 3


def test_rollback_flips_back_without_dropping_a_request(lab, playbook):
    deployed = journal(lab, "deploy")
    run, samples = under_load(lab, lambda: playbook("rollback.yml"))
    assert run.rc == 0
    record = journal(lab, "rollback")
    assert record["colour_to"] == deployed["colour_from"] == map_colour(lab["haproxy_map_file"])
    assert_zero_downtime(samples, float(record["switched_at"]), "1.1.0", "1.0.0")
    assert live(lab["production_url"])[0] == {"1.0.0"}
    assert not has_column(lab, "payments", "description"), "the rollback did not revert the 1.1.0 migrations"
    # The rest of the deploy in reverse: the team told, a post-mortem next to the journal, 1.1.0's cache gone.
    postmortem = json.loads((journal_dir(lab) / "postmortems" / f"{deployed['run_id']}.json").read_text())
    assert postmortem["steps"]["notify"]["status"] == "done", postmortem["steps"]
    assert any(event["event"].startswith("traffic back on ") for event in postmortem["timeline"]), postmortem["timeline"]
    with urllib.request.urlopen(f"{lab['mailbox_url']}/messages?to=oncall@payments.lab") as answer:
        subjects = [message["subject"] for message in json.load(answer)["messages"]]
    assert f"production: 1.1.0 rolled back to 1.0.0 ({deployed['run_id']})" in " ".join(subjects), subjects
    assert not redis_keys(lab, "payments:1.1.0:*"), "the rolled-back release's cache keys are still there"


def test_rollback_again_changes_nothing(lab, playbook):
    run = playbook("rollback.yml")
    assert run.rc == 0 and run.changed == 0
    assert live(lab["production_url"])[0] == {"1.0.0"}


@pytest.mark.extended
def test_deploy_again_then_identical_run_changes_nothing(lab, playbook):
    run, samples = under_load(lab, lambda: playbook("deploy.yml", "-e", "release_version=1.1.0"))
    assert run.rc == 0
    assert_zero_downtime(samples, float(journal(lab, "deploy")["switched_at"]), "1.0.0", "1.1.0")
    again = playbook("deploy.yml", "-e", "release_version=1.1.0")
    assert again.rc == 0
    assert again.changed == 0, again.recap
    assert live(lab["production_url"])[0] == {"1.1.0"}

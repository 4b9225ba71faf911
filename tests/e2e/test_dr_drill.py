"""The monthly disaster-recovery drill on the lab (playbooks/dr_drill.yml, logical backups: the lab has no pgBackRest).
After a production deploy, which takes a logical backup, payments are made; the drill then restores the newest
verified backup into a scratch cluster, checks it against the backup's manifest, runs the service's reconcile in
dry-run mode against it, journals RTO and RPO and removes the scratch cluster. The payments made after the backup
must be what the dry run would re-ingest, and neither the live database nor the scratch one may be written. A scratch
port in use stops the drill before anything is restored."""
from __future__ import annotations

import datetime
import json
import os
import socket
import time
from pathlib import Path

import boto3
import pytest
import stripe
import yaml

from helpers import history, http, journal, live, other_release, query, sign_off_releases, versions_or_nothing

# The drill's role runs against real PostgreSQL in tests/integration/dr_drill (`make test`); its playbook on the lab,
# after two production deploys, runs with PAYMENTS_E2E_ALL=1 (`make e2e-full`).
pytestmark = pytest.mark.extended

RELEASE = "1.1.0"
PAYMENTS_AFTER_BACKUP = 2
LIVE_COUNTS = """SELECT n.nspname || '.' || c.relname, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I',
  n.nspname, c.relname), false, true, '')))[1]::text::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1"""


def epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def newest_manifest(lab: dict) -> dict:
    """Production's newest backup manifest, read from the lab's bucket (backup ids carry their UTC time)."""
    settings = yaml.safe_load((Path(lab["inventory"]).parent / "group_vars" / "all" / "payments.yml").read_text())
    client = boto3.client("s3", endpoint_url=lab["s3_endpoint"], region_name=settings["backup_s3_region"],
                          aws_access_key_id=settings["backup_aws_access_key_id"],
                          aws_secret_access_key=settings["backup_aws_secret_access_key"])
    bucket, prefix = settings["backup_s3_bucket"], "production/postgres/"
    keys = sorted(item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                  for item in page.get("Contents", []) if item["Key"].endswith(".manifest.json"))
    assert keys, f"no backup in s3://{bucket}/{prefix}"
    return json.loads(client.get_object(Bucket=bucket, Key=keys[-1])["Body"].read())


def stripe_events_since(lab: dict, since: int) -> list[dict]:
    """Every event the lab's Stripe holds for production's live key, created at or after since."""
    client = stripe.StripeClient(lab["secrets"]["stripe_live_key"], base_addresses={"api": lab["stripe_api"]})
    page = client.v1.events.list({"created": {"gte": since}, "limit": 100})
    return [event.to_dict() for event in page.auto_paging_iter()]


def pay(lab: dict, number: int) -> str:
    """A payment through production's frontend; its PaymentIntent id."""
    status, _headers, body = http("POST", f"{lab['production_url']}/v1/payments", lab["secrets"]["api_key"],
                                  {"amount": 700 + number, "currency": "usd", "payment_method": "pm_lab_live_visa"},
                                  {"Idempotency-Key": f"dr-drill-{time.time_ns()}-{number}"})
    assert status == 201 and body["status"] == "succeeded", body
    return body["stripe_payment_intent_id"]


def live_counts(lab: dict) -> dict[str, int]:
    return dict(query(lab, LIVE_COUNTS))


def port_free(port: int) -> bool:
    """Nothing listens on the port. SO_REUSEADDR, as PostgreSQL binds: the scratch server closed its clients' connections
    on shutdown, and those sit in TIME_WAIT on the port for a minute, which a plain bind() counts as in use."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def processes_using(path: str) -> list[str]:
    """Command lines of the processes that name the path (a scratch postgres left running would)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if path in cmdline:
                found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def backed_up(lab, playbook) -> dict:
    """A production deploy that switched releases (so it took a backup of a database with data), then payments."""
    if not versions_or_nothing(lab["production_url"]):
        sign_off_releases(lab)
        run = playbook("deploy.yml", "-e", f"release_version={RELEASE}")
        assert run.rc == 0, "the production deploy failed"
    versions = live(lab["production_url"])[0]
    assert len(versions) == 1, versions
    run = playbook("deploy.yml", "-e", f"release_version={other_release(versions.pop())}")
    assert run.rc == 0, "the production deploy failed"
    manifest = newest_manifest(lab)
    assert manifest["backup_id"] == journal(lab, "deploy")["backup"]["id"] and manifest["row_counts"], manifest
    intents = [pay(lab, number) for number in range(PAYMENTS_AFTER_BACKUP)]
    return {"manifest": manifest, "intents": intents}


@pytest.fixture(scope="module")
def drill(lab, playbook, backed_up) -> dict:
    """One drill of the lab's production, with what the live database and Stripe held around it."""
    since = int(epoch(backed_up["manifest"]["created_at"]))
    before = {"counts": live_counts(lab), "events": stripe_events_since(lab, since), "history": len(history(lab))}
    run = playbook("dr_drill.yml")
    after = {"counts": live_counts(lab), "events": stripe_events_since(lab, since)}
    record = journal(lab, "drill")
    print("drill figures:", json.dumps({name: record.get(name) for name in ("rto_seconds", "rpo_seconds", "backup_id")}))
    print("reconcile dry run:", json.dumps(record.get("methods", {}).get("logical", {}).get("reconcile")))
    return {"run": run, "record": record, "before": before, "after": after, **backed_up}


def test_the_drill_restores_the_newest_backup_and_journals_rto_and_rpo(lab, drill):
    run, record, manifest = drill["run"], drill["record"], drill["manifest"]
    assert run.rc == 0, run.text[-3000:]
    assert record["kind"] == "drill" and record["passed"] is True and record["error"] is None
    assert history(lab)[-1]["kind"] == "drill" and len(history(lab)) == drill["before"]["history"] + 1
    assert record["backup_id"] == manifest["backup_id"]
    logical = record["methods"]["logical"]
    # RPO: everything committed after the backup's snapshot is lost, measured from the drill's start.
    assert logical["backup_epoch"] == pytest.approx(epoch(manifest["created_at"]), abs=1)
    assert record["rpo_seconds"] == pytest.approx(epoch(record["started_at"]) - epoch(manifest["created_at"]), abs=1.5)
    assert record["rpo_seconds"] > 0 and logical["rpo_basis"] == "backup snapshot"
    assert 0 < record["rto_seconds"] <= record["rto_target_seconds"]
    # The restored data is the backup's: every table's count is the one its manifest recorded.
    assert logical["row_counts_compared"] is True
    assert manifest["row_counts"] and {t: logical["row_counts"].get(t) for t in manifest["row_counts"]} == manifest["row_counts"]
    assert logical["amcheck"]["indexes"] > 0 and logical["amcheck"]["corrupt"] == 0
    assert logical["migration_head"]


def test_the_reconcile_dry_run_reports_what_it_would_reingest_and_writes_nothing(lab, drill):
    assert drill["run"].rc == 0, drill["run"].text[-3000:]
    logical = drill["record"]["methods"]["logical"]
    reconcile = logical["reconcile"]
    assert reconcile is not None and reconcile["dry_run"] is True
    assert reconcile["since"] == int(logical["backup_epoch"])
    # It listed what Stripe holds since the backup (nothing else pays on the lab during the drill).
    listed_before, listed_after = len(drill["before"]["events"]), len(drill["after"]["events"])
    assert listed_before <= reconcile["events_seen"] <= listed_after
    assert reconcile["stored"] + reconcile["already_present"] == reconcile["events_seen"]
    # The events of the payments made after the backup are not in it: the dry run would store them.
    ours = [e["id"] for e in drill["before"]["events"]
            if e["data"]["object"].get("id") in drill["intents"] or e["data"]["object"].get("payment_intent") in drill["intents"]]
    assert len(ours) >= PAYMENTS_AFTER_BACKUP, ours
    assert reconcile["stored"] >= len(ours)
    # Every payment and refund the live database gained since the backup would be recreated.
    counts, manifest = drill["before"]["counts"], drill["manifest"]["row_counts"]
    assert reconcile["payments_recreated"] == counts["public.payments"] - manifest["public.payments"]
    assert reconcile["payments_recreated"] >= PAYMENTS_AFTER_BACKUP
    assert reconcile["refunds_recreated"] == counts["public.refunds"] - manifest["public.refunds"]
    # Nothing written: the scratch database still holds the backup's rows after the dry run, the live one is untouched.
    assert logical["row_counts_after_reconcile"] == logical["row_counts"]
    assert drill["after"]["counts"] == drill["before"]["counts"]


def test_the_scratch_cluster_is_gone_after_the_drill(lab, drill):
    record = drill["record"]
    scratch = Path(lab["state_dir"]) / "dr-drill"
    assert not scratch.exists()
    assert processes_using(str(scratch)) == []
    assert port_free(record["scratch_port"])


def test_a_scratch_port_in_use_stops_the_drill_before_anything_is_restored(lab, playbook, drill):
    port = drill["record"]["scratch_port"]
    drills = len(history(lab))
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the drill before left TIME_WAIT connections on it
        busy.bind(("127.0.0.1", port))
        busy.listen()
        run = playbook("dr_drill.yml")
    assert run.rc != 0
    assert f"port {port} on 127.0.0.1 is already in use" in run.text and "Nothing was restored" in run.text
    assert run.results("Restore the newest verified backup into the scratch cluster") == []
    assert run.results("Restore the newest verified backup into the scratch cluster", "runner_on_failed") == []
    assert not (Path(lab["state_dir"]) / "dr-drill").exists()
    assert len(history(lab)) == drills


def test_a_failing_reconcile_dry_run_fails_the_drill_with_its_reason(lab, playbook, drill):
    """Stripe refuses the dry run's key: the drill fails with reconcile's own reason (the key not shown), is journalled
    as failed, and its scratch cluster is removed all the same."""
    key = f"sk_live_drill{time.time_ns()}"
    env = {"dr_drill_reconcile_env": {"STRIPE_SECRET_KEY": key, "STRIPE_API_BASE": lab["stripe_api"]}}
    run = playbook("dr_drill.yml", "-e", json.dumps(env))
    assert run.rc != 0
    assert "The reconcile dry run against the logical restore on app1 failed (exit status 78)" in run.text, run.text[-3000:]
    assert "Stripe refused STRIPE_SECRET_KEY (AuthenticationError, HTTP 401)" in run.text
    assert key not in run.output
    record = journal(lab, "drill")
    assert record["passed"] is False and "Stripe refused STRIPE_SECRET_KEY" in record["error"]
    assert not (Path(lab["state_dir"]) / "dr-drill").exists() and port_free(drill["record"]["scratch_port"])

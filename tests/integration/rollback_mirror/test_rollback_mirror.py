"""The rollback_mirror role through ansible-playbook against real Redis, the Stripe emulator, an SMTP sink and a chat
webhook: what the deploy changed is put back, the team is told, the post-mortem is written; a re-run changes nothing;
bad input changes nothing."""

from __future__ import annotations

import json
import time
import typing as t

import pytest

from conftest import FRONTEND, World

pytestmark = pytest.mark.timeout(180)

RUN_ID = "production-1.1.0-20261127T100335471822Z"
REASON = "payment success rate 0.82 below 0.9"
EVENTS_BEFORE = ["charge.refunded", "payment_intent.succeeded"]
ROLLED_BACK_KEYS = 1200  # more than one SCAN/UNLINK batch


def deploy_record(webhook_before: dict[str, t.Any] | None) -> dict[str, t.Any]:
    """A deploy's journal record as deploy.yml writes it (what the role is given), switched a minute ago."""
    switched = time.time() - 60
    return {
        "kind": "deploy", "run_id": RUN_ID, "environment": "production", "state": "complete",
        "colour_from": "green", "release_from": "1.0.0", "colour_to": "blue", "release_to": "1.1.0",
        "app_hosts": ["app1"], "switched_at": switched,
        "migration": {"applied": ["0003_payments_description"], "contract_applied": False,
                      "heads": {"before": "0002_payments_and_events", "after": "0003_payments_description"}},
        "backup": None,
        "bake": {"phase": "Failed", "message": f"Failed: payment_success Failed ({REASON})", "started_at": switched + 1,
                 "duration": 20.5, "metrics": [{
                     "name": "payment_success", "phase": "Failed", "failure_condition": "< 0.9",
                     "counts": {"successful": 1, "failed": 2, "inconclusive": 0, "error": 0},
                     "measurements": [{"n": 1, "at": 4.0, "value": 0.95, "verdict": "Successful"},
                                      {"n": 2, "at": 8.0, "value": 0.82, "verdict": "Failed"}]}]},
        "webhook_endpoint_before": webhook_before,
    }


def seed_cache(world: World) -> None:
    """Keys of the rolled-back release (1.1.0), of the release that serves again (1.0.0) and a rate limit counter."""
    pipe = world.redis.client.pipeline(transaction=False)
    for n in range(ROLLED_BACK_KEYS):
        pipe.set(f"payments:1.1.0:customer:v1:cus_{n}", "{}")
    pipe.set("payments:1.0.0:customer:v1:cus_1", "{}")
    pipe.set("payments:1.1.00:customer:v1:cus_1", "{}")  # a longer version: not under payments:1.1.0
    pipe.set("ratelimit:abcdef:1", "3")
    pipe.execute()


def kept_keys() -> list[str]:
    return ["payments:1.0.0:customer:v1:cus_1", "payments:1.1.00:customer:v1:cus_1"]


def our_mail(world: World) -> list[dict[str, t.Any]]:
    return [m for m in world.smtp.messages() if RUN_ID in m["subject"] and m["to"] == ["oncall@payments.test"]]


def deploy_webhooks(world: World) -> dict[str, t.Any]:
    """The endpoint as 1.0.0 had it; the 1.1.0 deploy's webhook phase (the stripe_webhooks role, which keeps the
    endpoint from before its change); then the 1.1.0 deploy moving it to a newer API version (a replacement)."""
    marker, url = "payments-deploy-production", f"{FRONTEND}/webhooks/stripe"
    first = world.stripe.create_endpoint(url, EVENTS_BEFORE, "2024-06-20", "payment-service 1.0.0", marker)
    world.secret_file.write_text(first["secret"])
    run = world.playbook("deploy_webhooks", {"previous_file": str(world.base / "previous.json")})
    assert run.returncode == 0, run.output[-4000:]
    (updated,) = world.stripe.endpoints()
    assert "invoice.paid" in updated["enabled_events"]
    world.stripe.create_endpoint(url, updated["enabled_events"], "2025-01-27.acacia", updated["description"], marker)
    world.stripe.call("DELETE", f"/v1/webhook_endpoints/{updated['id']}")
    return dict(json.loads((world.base / "previous.json").read_text()))


def test_a_rollback_mirrors_the_deploy_and_a_rerun_changes_nothing(world: World) -> None:
    previous = deploy_webhooks(world)  # the deploy kept the endpoint as it was before changing it
    assert previous["url"] == f"{FRONTEND}/webhooks/stripe" and previous["id"].startswith("we_")
    assert (sorted(previous["enabled_events"]), previous["api_version"]) == (EVENTS_BEFORE, "2024-06-20")
    assert previous["description"] == "payment-service 1.0.0" and "secret" not in json.dumps(previous)
    record = deploy_record(previous)
    secret_before = world.secret_file.read_text()
    seed_cache(world)
    actions = {"switched_at": time.time() - 5, "trigger": "manual", "reason": REASON,
               "migrations_reverted": ["0003_payments_description"]}
    mail_before = len(our_mail(world))
    world.chat.status = 500  # the chat webhook fails: the rollback goes on, warns, and a re-run posts

    run = world.playbook("rollback", {"record": record, "actions": actions})
    assert run.returncode == 0, run.output[-4000:]
    assert "WARNING: the rollback is done, but notifying the team failed" in run.output
    assert "chat webhook failed (status 500" in run.output and "s3cretHookToken" not in run.output

    (endpoint,) = world.stripe.endpoints()
    assert (sorted(endpoint["enabled_events"]), endpoint["api_version"]) == (EVENTS_BEFORE, "2024-06-20")
    assert endpoint["description"] == "payment-service 1.0.0"
    assert endpoint["metadata"]["payments_deploy_id"] == "payments-deploy-production"
    assert world.secret_file.read_text() != secret_before  # replaced: the new endpoint's signing secret is on file

    assert world.redis.keys("payments:1.1.0:*") == []
    assert world.redis.keys("payments:*") == kept_keys() and world.redis.keys("ratelimit:*") == ["ratelimit:abcdef:1"]

    (mail,) = our_mail(world)[mail_before:]
    assert "1.1.0" in mail["subject"] and "1.0.0" in mail["subject"]
    assert REASON in mail["body"] and f"deleted {ROLLED_BACK_KEYS} keys under payments:1.1.0" in mail["body"]

    postmortem = world.postmortem(RUN_ID)
    events = [e["event"] for e in postmortem["timeline"]]
    order = ["deploy " + RUN_ID + " started", "traffic switched to blue (1.1.0) from green (1.0.0)",
             "bake (analysis in Prometheus) started", "bake ended: ", "traffic back on green (1.0.0)",
             "webhook_endpoint: endpoint ", "cache: deleted 1200 keys", "notify: mail sent"]
    positions = [next(i for i, e in enumerate(events) if e.startswith(prefix)) for prefix in order]
    assert positions == sorted(positions), events
    assert [e["epoch"] for e in postmortem["timeline"]] == sorted(e["epoch"] for e in postmortem["timeline"])
    assert postmortem["analysis"]["metrics"] == record["bake"]["metrics"]
    assert postmortem["reason"] == REASON
    assert postmortem["what_was_rolled_back"]["migrations_reverted"] == ["0003_payments_description"]
    assert postmortem["steps"]["cache"]["data"]["deleted"] == ROLLED_BACK_KEYS
    assert postmortem["steps"]["webhook_endpoint"]["status"] == "restored"
    assert (postmortem["steps"]["notify"]["status"], postmortem["steps"]["notify"]["data"]["slack"]) == ("warning", "failed")
    summary = (world.journal / "production" / "postmortems" / f"{RUN_ID}.md").read_text()
    assert "## Timeline" in summary and "payment_success" in summary and REASON in summary

    # A re-run (rollback.yml again: traffic already back, nothing left to revert) posts what failed, sends no second
    # mail, and keeps what the first run did.
    world.chat.status = 200
    rerun = {"record": record, "actions": {"switched_at": None, "migrations_reverted": []}}
    again = world.playbook("rollback", rerun)
    assert again.returncode == 0, again.output[-4000:]
    (post,) = [p for p in world.chat.posts if p["body"] and "1.1.0" in p["body"]["text"]][-1:]
    assert post["path"] == "/services/T000/B000/s3cretHookToken" and REASON in post["body"]["text"]
    postmortem = world.postmortem(RUN_ID)
    assert (postmortem["steps"]["notify"]["data"]["slack"], postmortem["steps"]["notify"]["data"]["mail"]) == \
        ("sent", "already-sent")
    assert postmortem["steps"]["cache"]["data"]["deleted"] == ROLLED_BACK_KEYS  # the first run's record is kept
    assert postmortem["what_was_rolled_back"]["migrations_reverted"] == ["0003_payments_description"]
    files = {p.name: p.read_bytes() for p in (world.journal / "production" / "postmortems").iterdir()}

    # Once everything is done, a re-run changes nothing at all.
    posts = len(world.chat.posts)
    last = world.playbook("rollback", rerun)
    assert last.returncode == 0 and last.changed == 0, last.output[-4000:]
    assert {p.name: p.read_bytes() for p in (world.journal / "production" / "postmortems").iterdir()} == files
    assert len(our_mail(world)) == mail_before + 1 and len(world.chat.posts) == posts
    assert world.stripe.endpoints()[0]["id"] == endpoint["id"]


def test_a_failed_step_fails_the_role_at_its_end_and_a_rerun_finishes_it(world: World) -> None:
    seed_cache(world)
    record = dict(deploy_record(None), run_id=RUN_ID + "-redis")
    quiet = {"rollback_mirror_mail_to": [], "rollback_mirror_slack_webhook_url": ""}
    world.settings = dict(quiet, rollback_mirror_redis_url=world.redis.url.replace(world.redis.password, "wrong"))
    run = world.playbook("rollback", {"record": record, "actions": {"switched_at": time.time()}})
    assert run.returncode != 0 and "is unfinished: FAILED to clear payments:1.1.0" in run.output, run.output[-3000:]
    assert world.redis.password not in run.output
    steps = world.postmortem(record["run_id"])["steps"]  # written all the same, with the failure
    assert steps["cache"]["status"] == "failed" and steps["webhook_endpoint"]["status"] == "nothing-to-do"
    assert len(world.redis.keys("payments:1.1.0:*")) == ROLLED_BACK_KEYS

    world.settings = quiet
    again = world.playbook("rollback", {"record": record, "actions": {}})
    assert again.returncode == 0, again.output[-3000:]
    assert world.redis.keys("payments:1.1.0:*") == [] and world.redis.keys("payments:*") == kept_keys()
    assert world.postmortem(record["run_id"])["steps"]["cache"]["data"]["deleted"] == ROLLED_BACK_KEYS


@pytest.mark.parametrize(("change", "error"), [
    ({"drop": ["release_to", "run_id", "environment"]}, "the record lacks run_id, environment, release_to"),
    ({"set": {"release_to": "*", "webhook_endpoint_before": {"url": "x"}}}, "release_from and release_to must be release versions"),
    ({"settings": {"rollback_mirror_cache_namespace_root": ""}}, "rollback_mirror_cache_namespace_root must be a non-empty"),
])
def test_bad_input_fails_before_anything_changes(world: World, change: dict[str, t.Any], error: str) -> None:
    before = {"id": "we_none", "url": f"{FRONTEND}/webhooks/stripe", "enabled_events": EVENTS_BEFORE}
    record = {k: v for k, v in deploy_record(before).items() if k not in change.get("drop", [])}
    record.update(change.get("set", {}))
    world.settings = change.get("settings", {})
    seed_cache(world)
    mail_before = len(our_mail(world))
    run = world.playbook("rollback", {"record": record, "actions": {}})
    assert run.returncode != 0 and "rollback_mirror changed nothing" in run.output and error in run.output, run.output[-3000:]
    assert len(world.redis.keys("payments:1.1.0:*")) == ROLLED_BACK_KEYS
    assert world.stripe.endpoints() == [] and world.chat.posts == [] and len(our_mail(world)) == mail_before
    assert not (world.journal / "production" / "postmortems").exists()

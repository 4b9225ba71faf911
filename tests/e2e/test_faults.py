"""Faults in every phase of a deploy, under customer traffic: dependencies going away (Stripe, S3, PostgreSQL, Redis,
HAProxy's admin socket), the controller killed with -9, and a new colour that dies once it has traffic.

Production starts on 1.0.0; every faulted run deploys 1.1.0 (which applies two migrations). A fault passes when
production serves one release, the one the journal names, and every payment a customer saw succeed during the fault is
in the service's database and succeeded at Stripe. The faults run in phase order and each faulted run starts from the
healed state the previous fault left: reaching its own phase proves that the run after a heal gets past the previous
fault. The last test heals for good (a deploy, then a rollback, must both succeed) and the table of every fault is
printed at the end and written to tests/output/fault-table.md.
"""
from __future__ import annotations

import json

import pytest

from conftest import REPO, start_playbook
from faults import (FAULT_SUITE_ONLY, ColourDies, Fault, HiddenAdminSocket, KilledRun, Outage, assert_one_coherent_release,
                    failed_phase, failed_play, fault_customers, intent, journal_live, journal_state, kill_tree, lock,
                    lost_payments, phase_rank, unlock, wait_for_a_payment, wait_for_phase)
from helpers import has_column, history, journal_dir, map_colour, versions_or_nothing

pytestmark = [pytest.mark.timeout(600), FAULT_SUITE_ONLY]

FROM, TO = "1.0.0", "1.1.0"
FROM_HEAD = "0002_payments_and_events"  # the last migration of FROM; TO adds 0003 and 0004
DEPLOY = ("deploy.yml", "-e", f"release_version={TO}")
TABLE = REPO / "tests" / "output" / "fault-table.md"

FAULTS: list[Fault] = [
    KilledRun("kill-9-preflight", "preflight", "killed while it plans: the lock names the dead run, nothing else "
              "changed", delay=1.0, extended=True),
    Outage("stripe-down-preflight", "preflight", "the Stripe key check fails: nothing is touched", program="stripe", extended=True),
    HiddenAdminSocket("admin-socket-gone-preflight", "preflight", "the live colour cannot be read: nothing is touched",
                      extended=True),
    KilledRun("kill-9-webhooks", "Stripe webhooks", "a dead controller holds the lock until unlock.yml", delay=1.0,
              extended=True),
    Outage("stripe-down-webhooks", "Stripe webhooks", "the endpoint cannot be updated: stops before any host",
           program="stripe", extended=True),
    KilledRun("kill-9-install", "install", "half-downloaded artifacts are redone by the next run", delay=2.0, extended=True),
    Outage("postgres-down-backup", "backup", "no dump can be taken: the deploy stops before the schema changes",
           program="postgres", extended=True),
    Outage("s3-down-backup", "backup", "no backup, no migration: the deploy stops before the schema changes",
           program="s3", extended=True),
    KilledRun("kill-9-backup", "backup", "a backup cut off is never counted (its manifest is written last); the "
              "next run takes a new one", delay=1.5, extended=True),
    Outage("postgres-down-migrate", "migrate", "no migration; customers get 503s, none is lost", program="postgres",
           extended=True),
    KilledRun("kill-9-migrate", "migrate", "a migration cut off rolls back with its session; the next run applies it",
              delay=2.0),
    KilledRun("kill-9-release", "release", "killed while the idle colour restarts on the new release: customers "
              "stay on the live colour; the next run restarts the idle one", delay=2.0, extended=True),
    Outage("redis-down-smoke", "smoke test of the idle colour", "the idle colour's smoke test fails before traffic",
           program="redis", extended=True),
    Outage("postgres-down-smoke", "smoke test of the idle colour", "the idle colour cannot serve its test payments: "
           "traffic is never moved", program="postgres", delay=1.0, extended=True),
    Outage("stripe-down-smoke", "smoke test of the idle colour", "the idle colour's test payments fail: traffic is "
           "never moved", program="stripe", extended=True),
    KilledRun("kill-9-smoke", "smoke test of the idle colour", "killed in the idle colour's smoke test: it never "
              "had traffic", delay=1.0, extended=True),
    HiddenAdminSocket("admin-socket-gone-switch", "switch", "the flip cannot be made: the intent is settled, "
                      "traffic stays", extended=True),
    KilledRun("kill-9-after-intent", "intent", "killed between the journalled intent and the flip: the next "
              "deploy's preflight resolves the intent"),
    ColourDies("new-colour-dies", "flip", "the new colour crashes with traffic: verification fails, traffic is "
               "flipped back and an automatic rollback journalled"),
    Outage("stripe-down-after-flip", "flip", "the smoke test through the frontend fails: traffic is flipped back, "
           "although the previous colour shares the outage (its own processes serve)", program="stripe", extended=True),
    KilledRun("kill-9-right-after-flip", "flip", "killed between the flip and its verification: traffic is on a "
              "release nobody verified, the intent names it, rollback.yml resolves it and not an older record"),
    KilledRun("kill-9-bake", "bake", "killed while it judges the new release: the lock names the bake, the intent "
              "stays unsettled, rollback.yml resolves it", delay=4.0, extra_args=("-e", "deploy_bake=true"), extended=True),
    # A dependency both colours share goes down while the new release is judged: its failures are not blamed on it
    # (the same outage hits the previous colour), the bake is Inconclusive and a person decides; the runbook's
    # rollback.yml then goes back.
    Outage("stripe-down-bake", "bake", "payments fail on both colours: Inconclusive, not Failed; traffic stays, "
           "the previous colour warm, rollback.yml goes back", program="stripe",
           extra_args=("-e", "deploy_bake=true"), leaves="awaiting-decision", extended=True),
    Outage("postgres-down-bake", "bake", "both colours leave HAProxy: Inconclusive, not Failed; rollback.yml goes "
           "back once PostgreSQL is back", program="postgres", extra_args=("-e", "deploy_bake=true"),
           leaves="awaiting-decision", extended=True),
    Outage("redis-down-bake", "bake", "payments still succeed (Redis is a cache, rate limits fail open); p95 may "
           "rise on both colours: the bake passes or is Inconclusive, never Failed; rollback.yml goes back",
           program="redis", extra_args=("-e", "deploy_bake=true"), leaves="new release", extended=True),
    KilledRun("kill-9-alert-check", "alert check", "killed after the journal recorded the deploy: the lock names "
              "the alert check, the journal the new release; unlock.yml, then rollback.yml goes back", delay=1.0,
              leaves="deployed", extended=True),
]
# Then rollback.yml, from the healed deploy of TO, in its phase order: each faulted rollback starts from what the
# previous one left once healed, and the last test's re-run must finish every step.
ROLLBACK_FAULTS: list[Fault] = [
    HiddenAdminSocket("admin-socket-gone-switch-back", "switch back", "the flip back cannot be checked or made: "
                      "traffic stays on the deployed release, which the journal still names", extended=True),
    Outage("postgres-down-revert", "revert migrations", "the schema cannot be reverted: the run fails with traffic "
           "already back and journalled", program="postgres", at_rollback_record=True, extended=True),
    KilledRun("kill-9-revert", "revert migrations", "killed while it reverts: the lock names the phase; the re-run "
              "finds traffic back and goes on with the revert", delay=0.3),
    Outage("stripe-down-mirror", "mirror the deploy", "the webhook endpoint cannot be put back: the other steps run, "
           "the run fails, the re-run does it", program="stripe", extended=True),
    Outage("redis-down-mirror", "mirror the deploy", "the rolled-back release's cache cannot be cleared: the run "
           "fails, the re-run does it", program="redis", extended=True),
]
RUN_FAULTS = Fault.in_matrix(FAULTS)
RUN_ROLLBACK_FAULTS = Fault.in_matrix(ROLLBACK_FAULTS)
NOT_RUN = [{"fault": fault.name, "phase": ("rollback: " if fault in ROLLBACK_FAULTS else "") + fault.phase,
            "outcome": "full matrix only (`make e2e-faults`; docs/fault-suite.md)",
            "served": "-", "journal": "-", "payments": "-", "heal": "-"}
           for fault in [*FAULTS, *ROLLBACK_FAULTS] if fault not in [*RUN_FAULTS, *RUN_ROLLBACK_FAULTS]]
COVERED_ELSEWHERE = [
    {"fault": "release-1.1.1-regression", "phase": "bake", "outcome": "covered by tests/e2e/test_bake.py",
     "served": "-", "journal": "rollback/automatic (bake Failed)", "payments": "-", "heal": "-"},
]
ROWS: list[dict[str, str]] = []
HEALED: dict[str, bool] = {}
COLUMNS = ("fault", "phase", "outcome", "served", "journal", "payments", "heal")
HEADINGS = ("fault", "phase", "outcome", "release served", "journal state", "payments ok/failed/lost", "heal ok")


def table() -> str:
    lines = ["| " + " | ".join(HEADINGS) + " |", "|" + "---|" * len(HEADINGS)]
    lines += ["| " + " | ".join(row.get(c, "") for c in COLUMNS) + " |" for row in [*ROWS, *NOT_RUN, *COVERED_ELSEWHERE]]
    return "\n".join(lines) + "\n"


class FaultTable:
    """Prints the table at the end of the run."""

    @staticmethod
    def pytest_terminal_summary(terminalreporter) -> None:
        if ROWS:
            terminalreporter.write_sep("=", "fault table")
            terminalreporter.write(table())


@pytest.fixture(scope="module", autouse=True)
def fault_table(request):
    request.config.pluginmanager.register(FaultTable(), "fault-table")
    yield
    if ROWS:
        TABLE.parent.mkdir(parents=True, exist_ok=True)
        TABLE.write_text(table())


@pytest.fixture(scope="module")
def on_previous_release(lab, playbook) -> None:
    """Production on FROM, as the journal says; from what the rest of the suite leaves (TO deployed over FROM) a
    rollback gets there, from a fresh lab (nothing journalled yet) a deploy."""
    if versions_or_nothing(lab["production_url"]) != {FROM}:
        switches = [r for r in history(lab) if r.get("kind") in ("deploy", "rollback")]
        last = switches[-1] if switches else {}
        if (last.get("kind"), last.get("release_from"), last.get("release_to")) == ("deploy", FROM, TO):
            assert playbook("rollback.yml").rc == 0
        else:
            assert playbook("deploy.yml", "-e", f"release_version={FROM}").rc == 0
    assert assert_one_coherent_release(lab) == FROM


@pytest.mark.parametrize("fault", RUN_FAULTS, ids=[fault.name for fault in RUN_FAULTS])
def test_fault_leaves_one_journalled_release_and_loses_no_payment(fault: Fault, lab, playbook, on_previous_release,
                                                                  tmp_path):
    row = {"fault": fault.name, "phase": fault.phase, "heal": "pending"}
    ROWS.append(row)
    live_colour = map_colour(lab["haproxy_map_file"])
    log = tmp_path / "deploy.log"
    traffic, injected, phase_at_kill, served_killed = None, False, "", set()
    records_before = len(history(lab))
    run = start_playbook(*DEPLOY, *fault.extra_args, log=log)
    try:
        try:
            # Customers from the fault's phase on: the phases before it run as without the fault (on this 2-core lab
            # steady traffic pushes the idle colour's smoke test past its p95 limit in some runs).
            wait_for_phase(lab, run, fault.lock_phase)
            traffic = fault_customers(lab).start()
            fault.trigger(lab, run, live_colour)
            phase_at_kill = (lock(lab) or {}).get("phase", "")
            fault.inject(lab, run)
            injected = True
            run.wait(timeout=500)
        finally:
            if run.poll() is None:  # the fault was never reached in time: stop the run, free its lock
                kill_tree(run.pid)
                run.wait(timeout=30)
                unlock("fault suite: run stopped")
            held, pending, journal = lock(lab), intent(lab), journal_state(lab)
            records_killed = len(history(lab))
            if injected and fault.kills_run and fault.after_flip:
                served_killed = versions_or_nothing(lab["production_url"])
            if injected:
                fault.heal(lab)
            if traffic:
                wait_for_a_payment(traffic)
    finally:
        summary = traffic.stop() if traffic else {}
    output = log.read_text()
    text = " ".join(output.split())
    row["journal"] = journal
    print(output[-3000:])
    assert injected, f"{fault.name} never struck"

    if fault.kills_run:
        row["outcome"] = f"killed in {phase_at_kill}"
        assert held, "nothing but unlock.yml or the lease may release a dead run's lock"
    elif fault.leaves == "new release" and run.returncode == 0:  # the bake passed through it: deployed
        row["outcome"] = "rc 0, deployed through it (bake Successful)"
        assert held is None and pending is None
    else:
        failed_in = failed_phase(output)
        row["outcome"] = f"rc {run.returncode}, failed in {failed_in or '?'}" + \
            ("; flipped back" if "Traffic was flipped back" in text else "")
        assert run.returncode != 0, "the deploy succeeded through the fault"
        assert failed_in, "the failure does not name its phase"
        assert phase_rank(failed_in) >= min(phase_rank(fault.phase), phase_rank("switch"))
        assert held is None, "a failed run must release its lock"
        assert pending is None, "a failed run must settle its switch intent"
    assert lock(lab) is None, "the lock is still held after healing"

    served = assert_one_coherent_release(lab)
    row["served"] = served
    if fault.leaves == "previous":
        assert served == FROM, "production must stay on (or be flipped back to) the verified release"
    else:
        assert_left_on_the_new_release(fault, lab, served, held, text)
        # The runbook's next step (a person's decision): rollback.yml goes back to the previous release.
        back = playbook("rollback.yml")
        row["heal"] = f"rollback.yml rc {back.rc}"
        assert back.rc == 0 and assert_one_coherent_release(lab) == FROM, "rollback.yml did not go back"
    if fault.phase == "intent":
        assert pending and pending["release_to"] == TO, "the killed run's intent is gone"
    if fault.kills_run and fault.after_flip:
        # Killed with traffic on the new release: its intent is what rollback.yml acts on, never an older record.
        assert served_killed == {TO}, f"the killed run's flip did not happen: {served_killed}"
        assert records_killed == records_before, "the killed run journalled a switch it never verified or judged"
        assert held and held["phase"] == fault.lock_phase, f"the lock does not name the {fault.lock_phase}: {held}"
        assert pending and (pending["release_to"], pending["state"]) == (TO, "switching"), pending
        assert fault.rollback and fault.rollback.rc == 0 and "unfinished" in fault.rollback.text
        last = journal_live(lab)
        expected = ("rollback", "resolved-unfinished-switch", pending["run_id"])
        assert (last["kind"], last["state"], last["run_id"]) == expected, last
        assert intent(lab) is None, "rollback.yml left the intent it resolved"
        row["journal"] += "; rollback.yml resolved it"
    if fault.phase == "flip" and not fault.kills_run:  # the deploy's own rescue flipped back
        last = journal_live(lab)
        assert (last["kind"], last.get("state"), last["release_to"]) == ("rollback", "automatic", FROM)
        assert "Traffic was flipped back" in text

    lost = lost_payments(lab, summary)
    payments = summary["payments"]
    row["payments"] = f"{payments['succeeded']}/{payments['failed']}/{len(lost)}"
    assert payments["succeeded"] > 0, "the customers saw no payment succeed: the check proves nothing"
    assert lost == [], f"payments a customer saw succeed are lost: {lost}"


def assert_left_on_the_new_release(fault: Fault, lab: dict, served: str, held: dict | None, text: str) -> None:
    """TO serves and the journal says why: the bake could not judge it (awaiting a decision), or it was deployed and
    journalled before the run died."""
    assert served == TO, f"{fault.name} should leave {TO} serving"
    last = journal_live(lab)
    if fault.leaves == "new release":  # never rolled back for it: deployed, or awaiting a person's decision
        assert last["kind"] == "deploy" and last.get("state") in (None, "awaiting-decision"), last
        if last.get("state") is None:
            return
    if fault.leaves in ("awaiting-decision", "new release"):
        assert (last["kind"], last.get("state"), last["release_to"]) == ("deploy", "awaiting-decision", TO), last
        bake = last["bake"]
        assert bake["phase"] == "Inconclusive", bake["message"]
        held_at = [n for guard in bake["inconclusive_when"] for n in guard["held_at"]]
        assert held_at, f"the outage was never seen on the previous colour: {bake['inconclusive_when']}"
        if fault.leaves == "awaiting-decision":
            # Without the shared outage these measurements would have failed the release and flipped traffic back.
            excused = sum(metric["counts"]["excused"] for metric in bake["metrics"])
            assert excused > 0, f"no failure was excused, the outage did not show in the measurements: {bake['message']}"
        assert "was INCONCLUSIVE (one of postgres, redis, stripe was down on" in text
        assert "is kept warm: run rollback.yml to go back, or keep it" in text
    else:
        assert (last["kind"], last.get("state"), last["release_to"]) == ("deploy", None, TO), last
        if fault.kills_run:
            assert held and held["phase"] == fault.phase, f"the dead run's lock should name {fault.phase}: {held}"


def test_heal_deploy_succeeds(lab, playbook, on_previous_release):
    """After every fault of the deploy, healed: a re-run of the deploy succeeds; the rollback faults start there."""
    assert ROWS, "no fault ran"
    if has_column(lab, "payments", "description"):
        # The faulted runs that got past their migration left 1.1.0's schema (it expands: 1.0.0 runs on it). A deploy
        # applying nothing would leave its rollback nothing to revert: back to 1.0.0's schema first.
        assert playbook("migrate.yml", "-e", f"release_version={TO}", "-e", "migrate_state=reverted",
                        "-e", f"migrate_target={FROM_HEAD}").rc == 0
    deployed = playbook(*DEPLOY)
    HEALED["deploy"] = deployed.rc == 0 and assert_one_coherent_release(lab) == TO
    assert deployed.rc == 0, "the re-run of the deploy after the faults failed"
    assert HEALED["deploy"] and intent(lab) is None and lock(lab) is None
    assert journal_live(lab)["migration"]["applied"], "the healed deploy applied no migration to revert"


@pytest.mark.parametrize("fault", RUN_ROLLBACK_FAULTS, ids=[fault.name for fault in RUN_ROLLBACK_FAULTS])
def test_rollback_fault_leaves_one_journalled_release_and_loses_no_payment(fault: Fault, lab, tmp_path):
    assert HEALED.get("deploy"), "the deploy the rollback faults start from did not succeed"
    row = {"fault": fault.name, "phase": f"rollback: {fault.phase}", "heal": "pending"}
    ROWS.append(row)
    log = tmp_path / "rollback.log"
    traffic, injected, run = None, False, None
    try:
        try:
            if fault.phase == "switch back":  # one module call takes the lock and flips: strike before it starts
                traffic = fault_customers(lab).start()
                fault.inject(lab, None)
                injected = True
                run = start_playbook("rollback.yml", log=log)
            else:
                run = start_playbook("rollback.yml", log=log)
                traffic = fault_customers(lab).start()
                fault.trigger(lab, run, "")
                fault.inject(lab, run)
                injected = True
            run.wait(timeout=300)
        finally:
            if run and run.poll() is None:
                kill_tree(run.pid)
                run.wait(timeout=30)
                unlock("fault suite: rollback stopped")
            held, journal = lock(lab), journal_state(lab)
            if injected:
                fault.heal(lab)
            if traffic:
                wait_for_a_payment(traffic)
    finally:
        summary = traffic.stop() if traffic else {}
    output = log.read_text()
    print(output[-3000:])
    row["journal"] = journal
    assert injected, f"{fault.name} never struck"

    if fault.kills_run:
        row["outcome"] = f"killed in {held['phase'] if held else '?'}"
        assert held and held["phase"] == fault.phase, f"the dead rollback's lock should name {fault.phase}: {held}"
    else:
        # The flip back is one module call that takes and releases the lock itself: its failure says that nothing
        # was changed; the later plays' failures name their phase.
        failed_in = failed_phase(output) or ("switch back" if "nothing was changed" in " ".join(output.split())
                                             and failed_play(output) == "Switch traffic back first" else "")
        row["outcome"] = f"rc {run.returncode}, failed in {failed_in or '?'}"
        assert run.returncode != 0, "the rollback succeeded through the fault"
        assert failed_in == fault.phase, f"the failure names {failed_in!r}, not {fault.phase!r}"
        assert held is None, "a failed rollback must release its lock"
    assert lock(lab) is None and intent(lab) is None

    served = assert_one_coherent_release(lab)
    row["served"] = served
    # Before the flip back nothing moved; from it on, traffic is back and journalled whatever fails later.
    assert served == (TO if fault.phase == "switch back" else FROM)

    lost = lost_payments(lab, summary)
    payments = summary["payments"]
    row["payments"] = f"{payments['succeeded']}/{payments['failed']}/{len(lost)}"
    assert payments["succeeded"] > 0, "the customers saw no payment succeed: the check proves nothing"
    assert lost == [], f"payments a customer saw succeed are lost: {lost}"


def test_heal_rollback_finishes_every_step(lab, playbook):
    """After the rollback faults, healed: a re-run of the rollback finishes the job (the revert, the mirrored steps)
    and leaves one release, the previous one."""
    assert HEALED.get("deploy"), "the deploy the rollback faults start from did not succeed"
    rolled = playbook("rollback.yml")
    healed = rolled.rc == 0 and assert_one_coherent_release(lab) == FROM
    for row in ROWS:
        if row["heal"] == "pending":  # the faults left on the new release were healed by their own rollback.yml
            row["heal"] = "ok (shared re-runs)" if healed else "FAILED"
    assert rolled.rc == 0, "the rollback re-run after the faults failed"
    assert healed and journal_live(lab)["kind"] == "rollback"
    assert intent(lab) is None and lock(lab) is None
    assert all(counters["failed"] == 0 for counters in rolled.recap.values()), rolled.recap
    assert not has_column(lab, "payments", "description"), "the 1.1.0 migrations were never reverted"
    # The post-mortem of the rolled-back deploy records every mirrored step finished, across the faulted runs.
    run_id = journal_live(lab)["run_id"]
    steps = json.loads((journal_dir(lab) / "postmortems" / f"{run_id}.json").read_text())["steps"]
    unfinished = {name: step["status"] for name, step in steps.items() if step["status"] in ("failed", "warning")}
    assert set(steps) >= {"webhook_endpoint", "cache", "notify"} and not unfinished, steps

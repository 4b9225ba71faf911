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

import os

import pytest

from conftest import REPO, start_playbook
from customer_traffic import CustomerTraffic
from faults import (ColourDies, Fault, HiddenAdminSocket, KilledRun, Outage, assert_one_coherent_release,
                    failed_phase, intent, journal_live, journal_state, kill_tree, lock, lost_payments, phase_rank,
                    unlock, wait_for_a_payment, wait_for_phase)
from helpers import map_colour, versions_or_nothing

# About 16 minutes on an idle 2-core machine: `make e2e` runs it in a pytest run of its own, after the rest of the
# end-to-end suite (PAYMENTS_E2E_FAULTS=1), and a plain `pytest tests/e2e` leaves it out.
pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(os.environ.get("PAYMENTS_E2E_FAULTS") != "1",
                                 reason="the fault suite runs last in `make e2e` (or alone: `make e2e-faults`)")]

FROM, TO = "1.0.0", "1.1.0"
DEPLOY = ("deploy.yml", "-e", f"release_version={TO}")
TABLE = REPO / "tests" / "output" / "fault-table.md"

FAULTS: list[Fault] = [
    KilledRun("kill-9-preflight", "preflight", "killed while it plans: the lock names the dead run, nothing else "
              "changed", delay=1.0),
    Outage("stripe-down-preflight", "preflight", "the Stripe key check fails: nothing is touched", program="stripe"),
    HiddenAdminSocket("admin-socket-gone-preflight", "preflight", "the live colour cannot be read: nothing is touched"),
    KilledRun("kill-9-webhooks", "Stripe webhooks", "a dead controller holds the lock until unlock.yml", delay=1.0),
    Outage("stripe-down-webhooks", "Stripe webhooks", "the endpoint cannot be updated: stops before any host",
           program="stripe"),
    KilledRun("kill-9-install", "install", "half-downloaded artifacts are redone by the next run", delay=2.0),
    Outage("s3-down-backup", "backup", "no backup, no migration: the deploy stops before the schema changes",
           program="s3"),
    KilledRun("kill-9-backup", "backup", "a backup cut off is never counted (its manifest is written last); the "
              "next run takes a new one", delay=1.5),
    Outage("postgres-down-migrate", "migrate", "no migration; customers get 503s, none is lost", program="postgres"),
    KilledRun("kill-9-migrate", "migrate", "a migration cut off rolls back with its session; the next run applies it",
              delay=2.0),
    KilledRun("kill-9-release", "release", "killed while the idle colour restarts on the new release: customers "
              "stay on the live colour; the next run restarts the idle one", delay=2.0),
    Outage("redis-down-smoke", "smoke test of the idle colour", "the idle colour's smoke test fails before traffic",
           program="redis"),
    KilledRun("kill-9-smoke", "smoke test of the idle colour", "killed in the idle colour's smoke test: it never "
              "had traffic", delay=1.0),
    HiddenAdminSocket("admin-socket-gone-switch", "switch", "the flip cannot be made: the intent is settled, "
                      "traffic stays"),
    KilledRun("kill-9-after-intent", "intent", "killed between the journalled intent and the flip: the next "
              "deploy's preflight resolves the intent"),
    ColourDies("new-colour-dies", "flip", "the new colour crashes with traffic: verification fails, traffic is "
               "flipped back and an automatic rollback journalled"),
]
COVERED_ELSEWHERE = [
    {"fault": "kill-9-right-after-flip", "phase": "flip", "outcome": "covered by tests/e2e/test_crash_safety.py",
     "served": "-", "journal": "intent rolled back by rollback.yml", "payments": "-", "heal": "-"},
    {"fault": "release-1.1.1-regression", "phase": "bake", "outcome": "covered by tests/e2e/test_bake.py",
     "served": "-", "journal": "rollback/automatic (bake Failed)", "payments": "-", "heal": "-"},
]
ROWS: list[dict[str, str]] = []
COLUMNS = ("fault", "phase", "outcome", "served", "journal", "payments", "heal")
HEADINGS = ("fault", "phase", "outcome", "release served", "journal state", "payments ok/failed/lost", "heal ok")


def table() -> str:
    lines = ["| " + " | ".join(HEADINGS) + " |", "|" + "---|" * len(HEADINGS)]
    lines += ["| " + " | ".join(row.get(c, "") for c in COLUMNS) + " |" for row in [*ROWS, *COVERED_ELSEWHERE]]
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
    rollback gets there."""
    if versions_or_nothing(lab["production_url"]) != {FROM}:
        last = journal_live(lab)
        if (last["kind"], last["release_from"], last["release_to"]) == ("deploy", FROM, TO):
            assert playbook("rollback.yml").rc == 0
        else:
            assert playbook("deploy.yml", "-e", f"release_version={FROM}").rc == 0
    assert assert_one_coherent_release(lab) == FROM


def customers(lab: dict) -> CustomerTraffic:
    """Payments and some refunds through the production frontend, bounded, with a live-mode card (production uses
    the live key); slow enough not to push the smoke tests' p95 over their limit on a 2-core lab."""
    return CustomerTraffic(lab["production_url"], lab["secrets"]["api_key"], rate=1.5, duration=300,
                           max_payments=450, refund_fraction=0.1, concurrency=2, seed=7,
                           payment_method="pm_lab_live_visa")


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_fault_leaves_one_journalled_release_and_loses_no_payment(fault: Fault, lab, on_previous_release, tmp_path):
    row = {"fault": fault.name, "phase": fault.phase, "heal": "pending"}
    ROWS.append(row)
    live_colour = map_colour(lab["haproxy_map_file"])
    log = tmp_path / "deploy.log"
    traffic, injected, phase_at_kill = None, False, ""
    run = start_playbook(*DEPLOY, log=log)
    try:
        try:
            # Customers from the fault's phase on: the phases before it run as without the fault (on this 2-core lab
            # steady traffic pushes the idle colour's smoke test past its p95 limit in some runs).
            wait_for_phase(lab, run, fault.lock_phase)
            traffic = customers(lab).start()
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
    assert served == FROM, "production must stay on (or be flipped back to) the verified release"
    if fault.phase == "intent":
        assert pending and pending["release_to"] == TO, "the killed run's intent is gone"
    if fault.phase == "flip":
        last = journal_live(lab)
        assert (last["kind"], last.get("state"), last["release_to"]) == ("rollback", "automatic", FROM)
        assert "Traffic was flipped back" in text

    lost = lost_payments(lab, summary)
    payments = summary["payments"]
    row["payments"] = f"{payments['succeeded']}/{payments['failed']}/{len(lost)}"
    assert payments["succeeded"] > 0, "the customers saw no payment succeed: the check proves nothing"
    assert lost == [], f"payments a customer saw succeed are lost: {lost}"


def test_heal_deploy_then_rollback_succeed(lab, playbook, on_previous_release):
    """After every fault, healed: a re-run of the deploy, then the rollback, both succeed and leave one release."""
    assert ROWS, "no fault ran"
    deployed = playbook(*DEPLOY)
    deployed_ok = deployed.rc == 0 and assert_one_coherent_release(lab) == TO
    rolled = playbook("rollback.yml") if deployed_ok else None
    healed = bool(rolled and rolled.rc == 0 and assert_one_coherent_release(lab) == FROM)
    for row in ROWS:
        row["heal"] = "ok (shared re-run)" if healed else "FAILED"
    assert deployed.rc == 0, "the re-run of the deploy after the faults failed"
    assert journal_live(lab)["kind"] == "rollback" and healed, "the rollback after the re-run failed"
    assert intent(lab) is None and lock(lab) is None

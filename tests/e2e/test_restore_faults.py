"""Faults in restore.yml, under customer traffic: the controller killed and PostgreSQL stopped while the backup is
restored into a new database, and Stripe gone while the events since the backup are re-ingested.

A restore puts the database back to the backup the last deploy took, then re-ingests from Stripe the events since
then, so that no payment accepted in between is lost. Each fault passes when production serves one release, the
customers' accepted payments are all in the live database and at Stripe once a re-run of restore.yml has finished
(the documented recovery: unlock.yml first after a kill), and the live database was never swapped for a partial one.
It runs after tests/e2e/test_faults.py in the fault suite's pytest run, on the production that suite leaves.
"""
from __future__ import annotations

import json
import time

import pytest

from conftest import start_playbook
from faults import (FAULT_SUITE_ONLY, Fault, KilledRun, Outage, assert_one_coherent_release, fault_customers, kill_tree, lock,
                    lost_payments, unlock, wait_for_a_payment, wait_until)
from helpers import journal_dir, query, versions_or_nothing

pytestmark = [pytest.mark.timeout(600), FAULT_SUITE_ONLY]

KEPT = "SELECT count(*) FROM pg_database WHERE datname LIKE 'payments\\_before\\_restore\\_%'"
RESTORING = "SELECT count(*) FROM pg_database WHERE datname LIKE 'payments\\_restore\\_%'"


def count(lab: dict, sql: str) -> int:
    """The first column of the first row; -1 while PostgreSQL cannot answer (stopped or restarting)."""
    import psycopg  # pylint: disable=import-outside-toplevel

    try:
        return query(lab, sql, "postgres")[0][0]
    except psycopg.OperationalError:
        return -1


# "restore" strikes once the module has created the database it restores into (pg_restore is running);
# "reconcile" once the restored database was swapped in (the replaced one is kept under a new name).
RESTORE_FAULTS: list[Fault] = [
    KilledRun("kill-9-restore", "restore", "killed while pg_restore fills the new database: the live database was "
              "never swapped; the lock names the restore until unlock.yml; the re-run restores again"),
    Outage("postgres-down-restore", "restore", "PostgreSQL stops mid-restore: the run fails saying the live database "
           "is untouched; the re-run restores", program="postgres",
           extended=True),
    Outage("stripe-down-reconcile", "reconcile", "the database is restored and swapped, but the events since the "
           "backup cannot be fetched: the run fails saying so, the re-run restores and re-ingests them",
           program="stripe"),
]


def strike_when(fault: Fault, lab: dict, run, kept_before: int, restoring_before: int) -> None:
    if fault.phase == "restore":
        wait_until(lambda: count(lab, RESTORING) > restoring_before, run, "the database it restores into")
    else:
        wait_until(lambda: count(lab, KEPT) > kept_before, run, "the swap")


@pytest.fixture(scope="module")
def restorable(lab, playbook) -> None:
    """The last deploy took a backup of a migrated database (test_faults.py leaves one; on a fresh lab the first
    deploy's backup precedes every migration, so the live release is deployed again)."""
    for _attempt in range(2):
        path = journal_dir(lab) / "last-deploy.json"
        last = json.loads(path.read_text()) if path.exists() else {}
        if (last.get("backup") or {}).get("migration_head"):
            return
        live = versions_or_nothing(lab["production_url"])
        assert playbook("deploy.yml", "-e", f"release_version={min(live) if live else '1.0.0'}").rc == 0
    raise AssertionError("no deploy left a backup of a migrated database")


RUN_RESTORE_FAULTS = Fault.in_matrix(RESTORE_FAULTS)


@pytest.mark.parametrize("fault", RUN_RESTORE_FAULTS, ids=[fault.name for fault in RUN_RESTORE_FAULTS])
def test_restore_fault_loses_no_payment(fault: Fault, lab, playbook, restorable, tmp_path):
    row = {"fault": fault.name, "phase": f"restore: {fault.phase}"}  # printed at the end, for the docs' table
    served_before = assert_one_coherent_release(lab)
    kept_before, restoring_before = count(lab, KEPT), count(lab, RESTORING)
    log = tmp_path / "restore.log"
    traffic = fault_customers(lab).start()
    injected, held, run = False, None, None
    try:
        time.sleep(2)  # some payments before the restore starts
        run = start_playbook("restore.yml", log=log)
        try:
            strike_when(fault, lab, run, kept_before, restoring_before)
            fault.inject(lab, run)
            injected = True
            run.wait(timeout=300)
        finally:
            if run.poll() is None:
                kill_tree(run.pid)
                run.wait(timeout=30)
                unlock("fault suite: restore stopped")
            held = lock(lab)
            if injected:
                fault.heal(lab)  # a kill: unlock.yml
        text = " ".join(log.read_text().split())
        swapped = count(lab, KEPT) > kept_before
        row["outcome"] = ("killed" if fault.kills_run else f"rc {run.returncode}") + \
            ("; swapped" if swapped else "; live database untouched")
        assert injected, f"{fault.name} never struck"
        if fault.kills_run:
            assert held and held["phase"] == "restore", f"the dead run's lock should name the restore: {held}"
            assert not swapped, "a killed restore swapped the live database"
        else:
            assert run.returncode != 0, "the restore succeeded through the fault"
            assert held is None, "a failed restore must release its lock"
            if fault.phase == "restore":
                assert not swapped and "is untouched" in text, text[-2000:]
            else:
                assert swapped, "the fault struck before the swap"
                assert "since the backup" in text and "were not re-ingested" in text, text[-2000:]
                assert "restore.yml -e restore_reconcile_only=true" in text
        # The documented recovery (docs/deploy.md): once the dependency is back, run restore.yml again, or after a
        # failed re-ingest only the re-ingest; after a kill, unlock.yml first (the heal did).
        again = playbook("restore.yml", *(("-e", "restore_reconcile_only=true") if fault.phase == "reconcile" else ()))
        row["re-run"] = f"rc {again.rc}"
        assert again.rc == 0, "the re-run of restore.yml failed"
        wait_for_a_payment(traffic)
    finally:
        summary = traffic.stop()
    assert lock(lab) is None
    assert assert_one_coherent_release(lab) == served_before
    lost = lost_payments(lab, summary)
    payments = summary["payments"]
    row["payments"] = f"{payments['succeeded']}/{payments['failed']}/{len(lost)}"
    print(row)
    assert payments["succeeded"] > 0, "the customers saw no payment succeed: the check proves nothing"
    assert lost == [], f"payments a customer saw succeed are lost: {lost}"

"""db_migrate under contention on a real PostgreSQL 15: the migration advisory lock, lock_timeout and bounded retries."""

from __future__ import annotations

import time
import typing as t
from pathlib import Path

import pytest

from migration_plans import append_change, service_plan
from migration_cluster import Cluster, ModuleRunner

pytestmark = pytest.mark.timeout(180)

HOLDER_SQL = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = %s)"


def wait_for_lock_holder(cluster: Cluster, database: str, timeout: float = 30) -> int:
    """pid of the backend holding an advisory lock in ``database``, once there is one."""
    deadline = time.monotonic() + timeout
    with cluster.connect("postgres") as conn:
        while time.monotonic() < deadline:
            row = conn.execute(HOLDER_SQL, (database,)).fetchone()
            if row:
                return int(row[0])
            time.sleep(0.05)
    raise AssertionError(f"no connection took the migration advisory lock within {timeout}s")


def slow_plan(work_dir: Path, seconds: float) -> Path:
    """The service plan up to 0002 plus a change whose deploy script sleeps."""
    plan_dir = service_plan(work_dir / "migrations", upto="0002_payments_and_events")
    append_change(plan_dir, "0003_slow", deploy=f"SELECT pg_sleep({seconds});\nCREATE TABLE slow (id int);\n",
                  verify="SELECT id FROM slow WHERE false;\n", revert="DROP TABLE slow;\n")
    return plan_dir


def registry_names(cluster: Cluster, database: str) -> list[str]:
    with cluster.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM payments_deploy.changes ORDER BY applied_at, name")]


def test_a_concurrent_run_waits_for_the_lock_then_finds_nothing_to_do(runner: ModuleRunner, cluster: Cluster, database: str,
                                                                      work_dir: Path) -> None:
    plan_dir = slow_plan(work_dir, 3)
    first = runner.start(plan_dir)
    try:
        holder = wait_for_lock_holder(cluster, database)
        second = runner.run(plan_dir, advisory_lock_timeout=60)
    finally:
        first_result = runner.finish(first)
    assert first_result["rc"] == 0 and [c["name"] for c in first_result["applied"]][-1] == "0003_slow", first_result
    assert second["rc"] == 0 and second["changed"] is False, second
    assert second["applied"] == [] and second["pending"] == [] and second["statements"] == []
    assert second["lock_wait_seconds"] > 0 and second["heads"] == {"before": "0003_slow", "after": "0003_slow"}
    assert holder > 0
    assert registry_names(cluster, database) == ["0001_customers", "0002_payments_and_events", "0003_slow"]


def test_a_concurrent_run_gives_up_on_the_lock_naming_its_holder(runner: ModuleRunner, cluster: Cluster, database: str,
                                                                 work_dir: Path) -> None:
    plan_dir = slow_plan(work_dir, 4)
    first = runner.start(plan_dir)
    try:
        holder = wait_for_lock_holder(cluster, database)
        second = runner.run(plan_dir, advisory_lock_timeout=0.5)
    finally:
        first_result = runner.finish(first)
    assert second["rc"] == 1, second
    assert second["msg"].startswith("another migration holds the lock of registry payments_deploy.changes")
    assert f"pid {holder} (user postgres, application payments.deploy.db_migrate" in second["msg"]
    assert "advisory_lock_timeout" in second["msg"] and second["msg"].endswith("nothing changed")
    assert second["lock_holder_pid"] == holder and second["applied"] == [] and second["statements"] == []
    assert first_result["rc"] == 0, first_result
    assert registry_names(cluster, database) == ["0001_customers", "0002_payments_and_events", "0003_slow"]


def hold_payments_lock(cluster: Cluster, database: str) -> t.Any:
    """A connection inside a transaction holding ACCESS EXCLUSIVE on payments (like a long maintenance job)."""
    conn = cluster.connect(database, autocommit=False)
    conn.execute("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE")
    return conn


def test_lock_timeout_fails_the_change_after_bounded_retries(runner: ModuleRunner, cluster: Cluster, database: str,
                                                             work_dir: Path) -> None:
    plan_dir = service_plan(work_dir / "migrations")
    assert runner.run(plan_dir, target="0002_payments_and_events")["rc"] == 0
    blocker = hold_payments_lock(cluster, database)
    try:
        result = runner.run(plan_dir, lock_timeout="300ms", retries=2)
    finally:
        blocker.rollback()
        blocker.close()
    assert result["rc"] == 1 and result["changed"] is False, result
    assert "change 0003_payments_description: deploy script" in result["msg"]
    assert "55P03 canceling statement due to lock timeout" in result["msg"] and "(lock_timeout 300ms:" in result["msg"]
    assert "gave up after 3 attempts (retries=2)" in result["msg"] and "the registry is unchanged" in result["msg"]
    failed = result["failed_change"]
    assert failed["name"] == "0003_payments_description" and failed["sqlstate"] == "55P03"
    assert failed["attempts"] == 3 and len(failed["errors"]) == 3
    assert result["statements"] == [str(plan_dir / "deploy" / "0003_payments_description.sql")] * 3
    assert registry_names(cluster, database) == ["0001_customers", "0002_payments_and_events"]
    with cluster.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'payments' "
                            "AND column_name = 'description'").fetchone() == (0,)

    after = runner.run(plan_dir, lock_timeout="300ms", retries=2)  # the lock is gone: the same run now passes
    assert after["rc"] == 0 and [c["name"] for c in after["applied"]] == ["0003_payments_description", "0004_payments_created_at_index"]


def test_a_lock_released_while_retrying_lets_the_change_through(runner: ModuleRunner, cluster: Cluster, database: str,
                                                                work_dir: Path) -> None:
    plan_dir = service_plan(work_dir / "migrations")
    assert runner.run(plan_dir, target="0002_payments_and_events")["rc"] == 0
    blocker = hold_payments_lock(cluster, database)
    migration = runner.start(plan_dir, lock_timeout="200ms", retries=6)
    seen: list[bool] = []  # whether the change was waiting for the table lock, at each poll
    with cluster.connect("postgres") as watcher:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = bool(watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = %s",
                                           (database,)).fetchone()[0])
            if not seen or seen[-1] != waiting:
                seen.append(waiting)
            if seen[-3:] == [True, False, True]:  # the first attempt timed out, the next one is waiting: let it through
                break
            time.sleep(0.02)
    blocker.rollback()
    blocker.close()
    result = runner.finish(migration)
    assert seen[-3:] == [True, False, True], seen
    assert result["rc"] == 0, result
    first = result["applied"][0]
    assert first["name"] == "0003_payments_description" and first["attempts"] >= 2
    assert registry_names(cluster, database)[-1] == "0004_payments_created_at_index"

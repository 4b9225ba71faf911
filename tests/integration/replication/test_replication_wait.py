"""pg_replication_info against a real primary and a real streaming replica: the wait ends only once the replica has
replayed what the primary committed before the module started, and the replica then serves it."""

from __future__ import annotations

import secrets
import threading
import time
import typing as t

import pytest

from replication_cluster import REPLICA_NAME, Check, Primary, Replica

pytestmark = pytest.mark.timeout(180)


def migrate(primary: Primary, rows: int) -> str:
    """A migration-like change on the primary: a table, an index and rows; returns the table's name."""
    table = f"payments_{secrets.token_hex(4)}"
    with primary.connect() as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, amount bigint NOT NULL, status text NOT NULL)")
        conn.execute(f"CREATE INDEX {table}_status_idx ON {table} (status)")
        conn.execute(f"INSERT INTO {table} SELECT g, g * 100, 'succeeded' FROM generate_series(1, %s) g", (rows,))
    return table


def replica_rows(replica: Replica, table: str) -> int | None:
    """The table's row count on the replica; None while the replica does not have the table."""
    if not replica.execute("SELECT to_regclass(%s) IS NOT NULL", params=(table,))[0][0]:
        return None
    return int(replica.execute(f"SELECT count(*) FROM {table}")[0][0])


def test_the_replica_has_the_migration_once_the_wait_ends(primary: Primary, replica: Replica, replication_info: Check) -> None:
    rows = 500 + secrets.randbelow(500)
    table = migrate(primary, rows)
    committed = primary.lsn()
    result = replication_info(primary, min_replicas=1, required_replicas=[REPLICA_NAME], max_lag_bytes=16 << 20)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is False
    assert primary.lsn_at_least(result["target_lsn"], committed)
    [streaming] = [r for r in result["replicas"] if r["application_name"] == REPLICA_NAME]
    assert streaming["state"] == "streaming" and streaming["caught_up"] is True
    assert primary.lsn_at_least(streaming["replay_lsn"], result["target_lsn"])
    assert result["streaming"] == 1
    assert replica_rows(replica, table) == rows


def test_the_wait_holds_while_replay_is_paused_and_ends_when_it_resumes(primary: Primary, replica: Replica, replication_info: Check) -> None:
    replica.execute("SELECT pg_wal_replay_pause()")
    rows = 100 + secrets.randbelow(100)
    table = migrate(primary, rows)
    outcome: dict[str, t.Any] = {}
    waiter = threading.Thread(target=lambda: outcome.update(replication_info(primary, timeout=120, min_replicas=1)))
    waiter.start()
    # while replay is paused the module cannot legitimately finish: the replica lacks the change
    waiter.join(3)
    assert waiter.is_alive(), f"the module ended while the replica could not have replayed the change: {outcome}"
    assert replica_rows(replica, table) is None
    replica.execute("SELECT pg_wal_replay_resume()")
    waiter.join(150)
    assert not waiter.is_alive()
    assert outcome.get("failed") is not True, outcome.get("msg")
    [streaming] = [r for r in outcome["replicas"] if r["application_name"] == REPLICA_NAME]
    assert streaming["caught_up"] is True
    assert replica_rows(replica, table) == rows


def test_a_paused_replica_times_out_named_with_where_it_stands(primary: Primary, replica: Replica, replication_info: Check) -> None:
    replica.execute("SELECT pg_wal_replay_pause()")
    migrate(primary, 50)
    result = replication_info(primary, timeout=3)
    assert result["failed"] is True
    msg = result["msg"]
    assert f"replica '{REPLICA_NAME}' (127.0.0.1) has not replayed {result['target_lsn']}" in msg, msg
    assert "received" in msg and "not replayed it (replay paused" in msg, msg
    [paused] = [r for r in result["replicas"] if r["application_name"] == REPLICA_NAME]
    assert paused["caught_up"] is False and paused["lag_bytes"] > 0


def test_a_paused_replica_fails_the_byte_lag_bound_then_passes_once_resumed(primary: Primary, replica: Replica,
                                                                            replication_info: Check) -> None:
    replica.execute("SELECT pg_wal_replay_pause()")
    migrate(primary, 2000)
    behind = replication_info(primary, wait_for_lsn="none", timeout=0, max_lag_bytes=1024)
    assert behind["failed"] is True
    [paused] = [r for r in behind["replicas"] if r["application_name"] == REPLICA_NAME]
    assert paused["lag_bytes"] > 1024
    assert f"replica '{REPLICA_NAME}' (127.0.0.1) is {paused['lag_bytes']} bytes behind the primary" in behind["msg"]
    assert "more than max_lag_bytes 1024" in behind["msg"]
    replica.execute("SELECT pg_wal_replay_resume()")
    caught_up = replication_info(primary, max_lag_bytes=paused["lag_bytes"] - 1, min_replicas=1)
    assert caught_up.get("failed") is not True, caught_up.get("msg")
    [resumed] = [r for r in caught_up["replicas"] if r["application_name"] == REPLICA_NAME]
    assert resumed["lag_bytes"] < paused["lag_bytes"]


def test_an_explicit_position_is_waited_for_and_one_ahead_of_the_primary_is_refused(primary: Primary, replica: Replica,
                                                                                    replication_info: Check) -> None:
    table = migrate(primary, 10)
    position = primary.lsn()
    result = replication_info(primary, wait_for_lsn=position, min_replicas=1)
    assert result.get("failed") is not True, result.get("msg")
    assert result["target_lsn"] == position
    assert replica_rows(replica, table) == 10
    ahead = replication_info(primary, wait_for_lsn="FF/0")
    assert ahead["failed"] is True and "lies ahead of the primary's current WAL position" in ahead["msg"]


def test_a_replica_whose_replay_lag_grows_past_the_bound_fails_it(primary: Primary, replica: Replica, replication_info: Check) -> None:
    replica.execute("SELECT pg_wal_replay_pause()")
    migrate(primary, 100)
    # PostgreSQL's replay_lag of a stuck replica grows with each of its replies (one a second here)
    deadline = time.monotonic() + 60
    while primary.execute("SELECT coalesce(extract(epoch FROM replay_lag), 0) FROM pg_stat_replication WHERE application_name = %s",
                          params=(REPLICA_NAME,))[0][0] <= 1.5:
        assert time.monotonic() < deadline, "replay_lag of the paused replica never grew"
        time.sleep(0.2)
    result = replication_info(primary, wait_for_lsn="none", timeout=0, max_lag_seconds=1)
    assert result["failed"] is True
    [paused] = [r for r in result["replicas"] if r["application_name"] == REPLICA_NAME]
    assert paused["replay_lag"] > 1
    assert f"replica '{REPLICA_NAME}' (127.0.0.1) replays {paused['replay_lag']:.3f} s behind the primary" in result["msg"]
    assert "more than max_lag_seconds 1" in result["msg"]

"""pg_replication_info's gates: too few replicas (a stopped one, none at all), a standby given as the primary, a role
that may not see the replicas' details, and check mode (which runs the same read-only checks)."""

from __future__ import annotations

import pytest

from replication_cluster import MONITOR_ROLE, REPLICA_NAME, Check, Primary, Replica

pytestmark = pytest.mark.timeout(180)


def test_a_stopped_replica_fails_min_replicas_and_is_named_when_required(primary: Primary, replica: Replica,
                                                                         replication_info: Check) -> None:
    replica.stop()
    counted = replication_info(primary, min_replicas=1, timeout=2)
    assert counted["failed"] is True
    assert "0 of the 1 replica(s) required stream from the primary (none is connected)" in counted["msg"], counted["msg"]
    assert counted["replicas"] == [] and counted["streaming"] == 0
    named = replication_info(primary, required_replicas=[REPLICA_NAME], timeout=1)
    assert named["failed"] is True
    assert f"replica '{REPLICA_NAME}' is not streaming (not connected to the primary)" in named["msg"], named["msg"]
    # "if applicable": with no replica required, a primary whose replica is down passes
    optional = replication_info(primary, timeout=1)
    assert optional.get("failed") is not True, optional.get("msg")
    assert optional["replicas"] == []


def test_a_replica_that_comes_back_within_the_timeout_is_waited_for(primary: Primary, replica: Replica, replication_info: Check) -> None:
    replica.stop()
    replica.start()  # not waiting for it to stream: the module does
    result = replication_info(primary, min_replicas=1, required_replicas=[REPLICA_NAME], timeout=60)
    assert result.get("failed") is not True, result.get("msg")
    assert [r["application_name"] for r in result["replicas"] if r["state"] == "streaming"] == [REPLICA_NAME]


def test_a_primary_without_replicas_passes_unless_one_is_required(lonely_primary: Primary, replication_info: Check) -> None:
    lonely_primary.execute("CREATE TABLE IF NOT EXISTS payments (id bigint PRIMARY KEY)")
    result = replication_info(lonely_primary)
    assert result.get("failed") is not True, result.get("msg")
    assert result["replicas"] == [] and result["streaming"] == 0
    assert lonely_primary.lsn_at_least(lonely_primary.lsn(), result["target_lsn"])
    required = replication_info(lonely_primary, min_replicas=1, timeout=0)
    assert required["failed"] is True and "0 of the 1 replica(s) required" in required["msg"]


def test_check_mode_runs_the_same_read_only_checks(primary: Primary, replica: Replica, replication_info: Check) -> None:
    passed = replication_info(primary, check=True, min_replicas=1)
    assert passed.get("failed") is not True, passed.get("msg")
    assert passed["changed"] is False
    assert [r["application_name"] for r in passed["replicas"]] == [REPLICA_NAME]
    replica.execute("SELECT pg_wal_replay_pause()")
    primary.execute("CREATE TABLE IF NOT EXISTS check_mode_marker (id int)")
    primary.execute("INSERT INTO check_mode_marker VALUES (1)")
    failed = replication_info(primary, check=True, timeout=2)
    assert failed["failed"] is True and f"replica '{REPLICA_NAME}'" in failed["msg"]
    assert failed["changed"] is False


def test_a_standby_is_refused(replica: Replica, replication_info: Check) -> None:
    result = replication_info(replica)
    assert result["failed"] is True
    assert f"the server at 127.0.0.1:{replica.port} is a standby (in recovery): connect to the primary" in result["msg"]


@pytest.mark.usefixtures("replica")
def test_a_role_that_cannot_see_the_details_is_told_to_get_pg_monitor(primary: Primary, replication_info: Check) -> None:
    url = primary.dsn(user=MONITOR_ROLE, password=primary.service_password)
    hidden = replication_info(primary, url=url)
    assert hidden["failed"] is True
    assert f"role '{MONITOR_ROLE}' may not read the details of pg_stat_replication" in hidden["msg"]
    assert f'GRANT pg_monitor TO "{MONITOR_ROLE}"' in hidden["msg"]
    assert primary.service_password not in str(hidden)
    primary.execute(f"GRANT pg_monitor TO {MONITOR_ROLE}")
    try:
        seen = replication_info(primary, url=url, min_replicas=1)
    finally:
        primary.execute(f"REVOKE pg_monitor FROM {MONITOR_ROLE}")
    assert seen.get("failed") is not True, seen.get("msg")
    assert [r["application_name"] for r in seen["replicas"]] == [REPLICA_NAME]

"""db_migrate against a real PostgreSQL 15: deploy, verify, revert, checksums, check mode, the service's own plan."""

from __future__ import annotations

import hashlib
import typing as t
from pathlib import Path

import psycopg
import pytest

from migration_plans import append_change, append_fixture, read_plan, service_plan, write_plan
from migration_cluster import SERVICE_PLAN, Cluster, ModuleRunner

pytestmark = pytest.mark.timeout(180)

SERVICE_CHANGES = ["0001_customers", "0002_payments_and_events", "0003_payments_description", "0004_payments_created_at_index"]
REGISTRY = "payments_deploy.changes"


def registry_rows(cluster: Cluster, database: str) -> list[tuple[t.Any, ...]]:
    """(name, kind, checksum, release, transactional, applied_by) of every registry row, oldest first; [] without a registry."""
    with cluster.connect(database) as conn:
        if conn.execute("SELECT to_regclass(%s)", (REGISTRY,)).fetchone()[0] is None:
            return []
        return conn.execute(f"SELECT name, kind, checksum, release, transactional, applied_by FROM {REGISTRY} "
                            "ORDER BY applied_at, name").fetchall()


def registry_names(cluster: Cluster, database: str) -> list[str]:
    return [row[0] for row in registry_rows(cluster, database)]


def relation_exists(cluster: Cluster, database: str, name: str) -> bool:
    with cluster.connect(database) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def columns(cluster: Cluster, database: str, table: str) -> dict[str, tuple[str, str]]:
    with cluster.connect(database) as conn:
        rows = conn.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                            "WHERE table_schema = 'public' AND table_name = %s", (table,)).fetchall()
    return {name: (data_type, nullable) for name, data_type, nullable in rows}


def documented_checksum(plan_dir: Path, name: str) -> str:
    """The checksum as docs/migrations.md defines it, computed independently of the module."""
    digest = hashlib.sha256()
    for script in ("deploy", "verify", "revert"):
        data = (plan_dir / script / f"{name}.sql").read_bytes()
        digest.update(f"{script} {len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def names(items: list[dict[str, t.Any]]) -> list[str]:
    return [item["name"] for item in items]


def test_applies_the_service_plan_then_has_nothing_to_do(runner: ModuleRunner, cluster: Cluster, database: str) -> None:
    result = runner.run(SERVICE_PLAN)
    assert result["rc"] == 0, result
    assert result["changed"] is True and result["schema_changed"] is True and result["contract_applied"] is False
    assert result["heads"] == {"before": None, "after": SERVICE_CHANGES[-1]}
    assert names(result["applied"]) == SERVICE_CHANGES and all(item["attempts"] == 1 for item in result["applied"])
    assert result["registry_created"] is True and result["registry"] == REGISTRY
    assert result["statements"] == [str(SERVICE_PLAN / script / f"{name}.sql") for name in SERVICE_CHANGES for script in ("deploy", "verify")]
    rows = registry_rows(cluster, database)
    assert [row[0] for row in rows] == SERVICE_CHANGES
    assert [(row[1], row[3], row[4], row[5]) for row in rows] == [("expand", "1.0.0", True, "postgres"), ("expand", "1.0.0", True, "postgres"),
                                                                  ("expand", "1.1.0", True, "postgres"), ("expand", "1.1.0", False, "postgres")]
    assert [row[2] for row in rows] == [documented_checksum(SERVICE_PLAN, name) for name in SERVICE_CHANGES]

    again = runner.run(SERVICE_PLAN)
    assert again["rc"] == 0 and again["changed"] is False, again
    assert again["applied"] == [] and again["pending"] == [] and again["statements"] == []
    assert again["heads"] == {"before": SERVICE_CHANGES[-1], "after": SERVICE_CHANGES[-1]}
    assert registry_names(cluster, database) == SERVICE_CHANGES


def test_the_service_schema_is_what_the_service_code_expects(runner: ModuleRunner, cluster: Cluster, database: str) -> None:
    assert runner.run(SERVICE_PLAN)["rc"] == 0
    assert columns(cluster, database, "payments") == {
        "id": ("text", "NO"), "stripe_payment_intent_id": ("text", "NO"), "customer_id": ("text", "YES"),
        "amount": ("bigint", "NO"), "currency": ("character", "NO"), "status": ("text", "NO"),
        "idempotency_key": ("text", "NO"), "created_at": ("timestamp with time zone", "YES"),
        "updated_at": ("timestamp with time zone", "YES"), "description": ("text", "YES")}
    assert set(columns(cluster, database, "refunds")) == {"id", "payment_id", "stripe_refund_id", "amount", "status", "created_at"}
    assert set(columns(cluster, database, "stripe_events")) == {"id", "type", "livemode", "created", "payload", "received_at",
                                                                "processed_at"}
    with cluster.connect(database) as conn:
        conn.execute("INSERT INTO customers (id, email, email_hash, name) VALUES ('cus_1', 'e', 'h', 'n')")
        conn.execute("INSERT INTO payments (id, stripe_payment_intent_id, customer_id, amount, currency, status, idempotency_key) "
                     "VALUES ('pay_1', 'pi_1', 'cus_1', 1000, 'eur', 'succeeded', 'idem-1')")
        conn.execute("INSERT INTO refunds (id, payment_id, stripe_refund_id, amount, status) VALUES ('re_1', 'pay_1', 'rf_1', 500, 'ok')")
        conn.execute("INSERT INTO stripe_events (id, type, livemode, created, payload) VALUES ('evt_1', 'x', false, now(), '{}')")
        for bad, error in (("'pay_2', 'pi_2', NULL, 0, 'eur', 's', 'idem-2'", psycopg.errors.CheckViolation),
                           ("'pay_3', 'pi_3', NULL, 1, 'eur', 's', 'idem-1'", psycopg.errors.UniqueViolation),
                           ("'pay_4', 'pi_1', NULL, 1, 'eur', 's', 'idem-4'", psycopg.errors.UniqueViolation),
                           ("'pay_5', 'pi_5', 'cus_404', 1, 'eur', 's', 'idem-5'", psycopg.errors.ForeignKeyViolation)):
            with pytest.raises(error):
                conn.execute("INSERT INTO payments (id, stripe_payment_intent_id, customer_id, amount, currency, status, "
                             f"idempotency_key) VALUES ({bad})")
        valid = conn.execute("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = 'payments_created_at_idx'::regclass").fetchone()
    assert valid == (True,)


def test_the_first_change_adopts_a_database_bootstrapped_by_bootstrap_sql(runner: ModuleRunner, cluster: Cluster,
                                                                          database: str) -> None:
    with cluster.connect(database) as conn:
        conn.execute((SERVICE_PLAN.parent / "bootstrap.sql").read_text())
        conn.execute("INSERT INTO customers (id, email, email_hash, name) VALUES ('cus_kept', 'e', 'h', 'n')")
    result = runner.run(SERVICE_PLAN)
    assert result["rc"] == 0 and names(result["applied"]) == SERVICE_CHANGES, result
    with cluster.connect(database) as conn:
        assert conn.execute("SELECT id FROM customers").fetchall() == [("cus_kept",)]


def test_deploys_up_to_a_target_only(runner: ModuleRunner, cluster: Cluster, database: str) -> None:
    result = runner.run(SERVICE_PLAN, target="0002_payments_and_events", diff=True)
    assert result["rc"] == 0 and names(result["applied"]) == SERVICE_CHANGES[:2], result
    assert result["heads"]["after"] == "0002_payments_and_events" and result["target"] == "0002_payments_and_events"
    assert result["diff"]["before"] == "" and result["diff"]["after"] == "0001_customers\n0002_payments_and_events\n"
    assert "description" not in columns(cluster, database, "payments")
    assert registry_names(cluster, database) == SERVICE_CHANGES[:2]


def test_check_mode_lists_what_would_run_and_changes_nothing(runner: ModuleRunner, cluster: Cluster, database: str) -> None:
    result = runner.run(SERVICE_PLAN, check=True, diff=True)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert [(p["name"], p["action"], p["files"]) for p in result["pending"]] == [
        (name, "deploy", [str(SERVICE_PLAN / "deploy" / f"{name}.sql"), str(SERVICE_PLAN / "verify" / f"{name}.sql")])
        for name in SERVICE_CHANGES]
    assert result["applied"] == [] and result["statements"] == [] and result["registry_created"] is False
    assert result["heads"] == {"before": None, "after": SERVICE_CHANGES[-1]}
    assert result["diff"]["after"] == "".join(f"{name}\n" for name in SERVICE_CHANGES)
    assert not relation_exists(cluster, database, "customers") and not relation_exists(cluster, database, REGISTRY)

    assert runner.run(SERVICE_PLAN, target="0002_payments_and_events")["rc"] == 0
    partial = runner.run(SERVICE_PLAN, check=True)
    assert names(partial["pending"]) == SERVICE_CHANGES[2:] and partial["heads"]["before"] == "0002_payments_and_events"
    assert registry_names(cluster, database) == SERVICE_CHANGES[:2]
    reverting = runner.run(SERVICE_PLAN, check=True, state="reverted", target="@base")
    assert [(p["name"], p["action"]) for p in reverting["pending"]] == [(n, "revert") for n in SERVICE_CHANGES[1::-1]]
    assert reverting["heads"] == {"before": "0002_payments_and_events", "after": None}
    assert registry_names(cluster, database) == SERVICE_CHANGES[:2] and relation_exists(cluster, database, "payments")


def test_an_edited_applied_change_fails_before_anything_runs(runner: ModuleRunner, cluster: Cluster, database: str,
                                                             work_dir: Path) -> None:
    plan_dir = service_plan(work_dir / "migrations")
    assert runner.run(plan_dir, target="0002_payments_and_events")["rc"] == 0
    before = documented_checksum(plan_dir, "0001_customers")
    with open(plan_dir / "verify" / "0001_customers.sql", "a", encoding="utf-8") as stream:
        stream.write("-- edited after it was deployed\n")
    after = documented_checksum(plan_dir, "0001_customers")
    for check in (True, False):
        result = runner.run(plan_dir, check=check)
        assert result["rc"] == 1 and result["failed"] is True, result
        assert "applied change 0001_customers was edited after it was deployed" in result["msg"]
        assert before in result["msg"] and after in result["msg"] and "nothing changed" in result["msg"]
        assert result["statements"] == [] and result["applied"] == []
        assert result["heads"] == {"before": "0002_payments_and_events", "after": "0002_payments_and_events"}
    assert registry_names(cluster, database) == SERVICE_CHANGES[:2]
    assert "description" not in columns(cluster, database, "payments")


def test_a_database_migrated_by_a_newer_release_is_refused(runner: ModuleRunner, cluster: Cluster, database: str,
                                                           work_dir: Path) -> None:
    newer = service_plan(work_dir / "newer")
    append_fixture(newer, "contract_drop_description")
    assert runner.run(newer)["rc"] == 0
    for state, target in (("deployed", None), ("reverted", "0002_payments_and_events")):
        result = runner.run(SERVICE_PLAN, state=state, target=target)
        assert result["rc"] == 1, result
        assert "applied changes that are not in plan" in result["msg"] and "0005_drop_payments_description (release 1.2.0" in result["msg"]
        assert "newer release" in result["msg"] and result["statements"] == []
    assert registry_names(cluster, database) == SERVICE_CHANGES + ["0005_drop_payments_description"]


def test_a_change_inserted_before_applied_ones_is_refused(runner: ModuleRunner, cluster: Cluster, database: str,
                                                          work_dir: Path) -> None:
    plan_dir = service_plan(work_dir / "migrations", upto="0002_payments_and_events")
    assert runner.run(plan_dir)["rc"] == 0
    plan = read_plan(plan_dir)
    plan["changes"].insert(1, {"name": "0001b_late", "kind": "expand", "release": "1.0.0"})
    write_plan(plan_dir, plan)
    for script in ("deploy", "verify", "revert"):
        (plan_dir / script / "0001b_late.sql").write_text("SELECT 1;\n")
    result = runner.run(plan_dir)
    assert result["rc"] == 1 and "0001b_late are not applied but the later change 0002_payments_and_events is" in result["msg"]
    assert registry_names(cluster, database) == SERVICE_CHANGES[:2]


def test_a_failed_verify_leaves_nothing_of_the_change(runner: ModuleRunner, cluster: Cluster, database: str,
                                                      work_dir: Path) -> None:
    plan_dir = service_plan(work_dir / "migrations", upto="0002_payments_and_events")
    append_change(plan_dir, "0003_widgets",
                  deploy="CREATE TABLE widgets (id int PRIMARY KEY);\nINSERT INTO widgets VALUES (1);\n",
                  verify="SELECT colour FROM widgets WHERE false;\n",  # the deploy script forgot this column
                  revert="DROP TABLE widgets;\n")
    result = runner.run(plan_dir)
    assert result["rc"] == 1 and result["changed"] is True, result
    assert names(result["applied"]) == SERVICE_CHANGES[:2] and result["heads"] == {"before": None, "after": "0002_payments_and_events"}
    verify = str(plan_dir / "verify" / "0003_widgets.sql")
    assert f"change 0003_widgets: verify script {verify} failed: 42703 column \"colour\" does not exist" in result["msg"]
    assert "nothing of it is applied and the registry is unchanged" in result["msg"]
    assert result["failed_change"] == {"name": "0003_widgets", "script": verify, "sqlstate": "42703", "attempts": 1,
                                       "errors": [result["failed_change"]["errors"][0]]}
    assert not relation_exists(cluster, database, "widgets")
    assert registry_names(cluster, database) == SERVICE_CHANGES[:2]


def test_reverts_to_a_target_then_to_base(runner: ModuleRunner, cluster: Cluster, database: str) -> None:
    assert runner.run(SERVICE_PLAN)["rc"] == 0
    result = runner.run(SERVICE_PLAN, state="reverted", target="0002_payments_and_events", diff=True)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert names(result["reverted"]) == ["0004_payments_created_at_index", "0003_payments_description"]
    assert result["heads"] == {"before": SERVICE_CHANGES[-1], "after": "0002_payments_and_events"}
    assert result["statements"][:2] == [str(SERVICE_PLAN / "revert" / "0004_payments_created_at_index.sql"),
                                        str(SERVICE_PLAN / "verify" / "0004_payments_created_at_index.sql")]
    assert result["diff"]["after"] == "0001_customers\n0002_payments_and_events\n"
    assert registry_names(cluster, database) == SERVICE_CHANGES[:2]
    assert "description" not in columns(cluster, database, "payments")
    assert not relation_exists(cluster, database, "payments_created_at_idx") and relation_exists(cluster, database, "payments")

    assert runner.run(SERVICE_PLAN, state="reverted", target="0002_payments_and_events")["changed"] is False
    base = runner.run(SERVICE_PLAN, state="reverted", target="@base")
    assert base["rc"] == 0 and names(base["reverted"]) == SERVICE_CHANGES[1::-1], base
    assert base["heads"] == {"before": "0002_payments_and_events", "after": None}
    assert registry_names(cluster, database) == []
    assert not any(relation_exists(cluster, database, t) for t in ("customers", "payments", "refunds", "stripe_events"))

    redeployed = runner.run(SERVICE_PLAN)  # the revert scripts left a database the plan deploys onto again
    assert redeployed["rc"] == 0 and names(redeployed["applied"]) == SERVICE_CHANGES


def test_a_revert_that_leaves_the_change_in_place_is_refused(runner: ModuleRunner, cluster: Cluster, database: str,
                                                             work_dir: Path) -> None:
    plan_dir = service_plan(work_dir / "migrations", upto="0001_customers")
    append_change(plan_dir, "0002_gadgets", deploy="CREATE TABLE gadgets (id int);\n",
                  verify="SELECT id FROM gadgets WHERE false;\n",
                  revert="COMMENT ON TABLE gadgets IS 'forgot to drop it';\n")
    assert runner.run(plan_dir)["rc"] == 0
    result = runner.run(plan_dir, state="reverted", target="0001_customers")
    assert result["rc"] == 1, result
    assert "change 0002_gadgets: its verify script" in result["msg"] and "still passes after the revert script ran" in result["msg"]
    assert registry_names(cluster, database) == ["0001_customers", "0002_gadgets"]
    with cluster.connect(database) as conn:  # the revert script's own effect was rolled back too
        assert conn.execute("SELECT obj_description('gadgets'::regclass)").fetchone() == (None,)
    unchecked = runner.run(plan_dir, state="reverted", target="0001_customers", verify_reverts=False)
    assert unchecked["rc"] == 0 and names(unchecked["reverted"]) == ["0002_gadgets"]
    assert registry_names(cluster, database) == ["0001_customers"]


def test_a_non_transactional_change_is_cleaned_up_by_its_revert_when_verify_fails(runner: ModuleRunner, cluster: Cluster,
                                                                                  database: str, work_dir: Path) -> None:
    plan_dir = service_plan(work_dir / "migrations", upto="0002_payments_and_events")
    append_change(plan_dir, "0003_status_index", transactional=False,
                  deploy="CREATE INDEX CONCURRENTLY payments_status_idx ON payments (status);\n",
                  verify="DO $$ BEGIN IF to_regclass('payments_status_ix') IS NULL THEN "
                         "RAISE EXCEPTION 'index payments_status_ix is missing'; END IF; END $$;\n",  # checks the wrong name
                  revert="DROP INDEX CONCURRENTLY IF EXISTS payments_status_idx;\n")
    result = runner.run(plan_dir)
    assert result["rc"] == 1, result
    assert "index payments_status_ix is missing" in result["msg"]
    assert f"It is not transactional: its revert script {plan_dir / 'revert' / '0003_status_index.sql'} ran to clean up" in result["msg"]
    assert result["statements"][-3:] == [str(plan_dir / script / "0003_status_index.sql") for script in ("deploy", "verify", "revert")]
    assert not relation_exists(cluster, database, "payments_status_idx")
    assert registry_names(cluster, database) == SERVICE_CHANGES[:2]


def test_a_contract_change_is_reported(runner: ModuleRunner, cluster: Cluster, database: str, work_dir: Path) -> None:
    first = runner.run(SERVICE_PLAN)
    assert first["rc"] == 0 and first["contract_applied"] is False
    plan_dir = service_plan(work_dir / "migrations")
    assert append_fixture(plan_dir, "contract_drop_description") == ["0005_drop_payments_description"]
    result = runner.run(plan_dir)
    assert result["rc"] == 0, result
    assert result["contract_applied"] is True and names(result["applied"]) == ["0005_drop_payments_description"]
    assert result["applied"][0]["kind"] == "contract"
    assert "description" not in columns(cluster, database, "payments")
    reverted = runner.run(plan_dir, state="reverted", target=SERVICE_CHANGES[-1])
    assert reverted["rc"] == 0 and reverted["contract_applied"] is False and names(reverted["reverted"]) == ["0005_drop_payments_description"]
    assert "description" in columns(cluster, database, "payments")


def test_a_concurrent_index_in_a_transactional_change_says_how_to_fix_the_plan(runner: ModuleRunner, cluster: Cluster,
                                                                               database: str, work_dir: Path) -> None:
    plan_dir = service_plan(work_dir / "migrations", upto="0002_payments_and_events")
    append_change(plan_dir, "0003_status_index", deploy="CREATE INDEX CONCURRENTLY payments_status_idx ON payments (status);\n",
                  verify="SELECT 1/COUNT(*) FROM pg_indexes WHERE indexname = 'payments_status_idx';\n",
                  revert="DROP INDEX CONCURRENTLY payments_status_idx;\n")
    result = runner.run(plan_dir)
    assert result["rc"] == 1 and result["failed_change"]["sqlstate"] == "25001", result
    assert "mark the change transactional: false in the plan" in result["msg"]
    assert not relation_exists(cluster, database, "payments_status_idx")
    assert registry_names(cluster, database) == SERVICE_CHANGES[:2]


def test_an_older_release_runs_on_a_newer_expand_only_schema(
        runner: ModuleRunner, cluster: Cluster, database: str, work_dir: Path) -> None:
    older = service_plan(work_dir / "older", upto="0002_payments_and_events")
    assert runner.run(SERVICE_PLAN)["rc"] == 0  # the newer release migrated to 0004 (all expand)
    refused = runner.run(older)
    assert refused["rc"] == 1 and "applied changes that are not in plan" in refused["msg"]
    allowed = runner.run(older, newer_schema="allow_expand")
    assert allowed["rc"] == 0, allowed
    assert allowed["changed"] is False and allowed["statements"] == []
    assert allowed["newer_applied"] == ["0003_payments_description", "0004_payments_created_at_index"]
    assert registry_names(cluster, database) == SERVICE_CHANGES


def test_an_older_release_is_refused_on_a_schema_with_a_newer_contract_change(
        runner: ModuleRunner, database: str, work_dir: Path) -> None:
    newer = service_plan(work_dir / "newer")
    append_fixture(newer, "contract_drop_description")
    assert runner.run(newer)["rc"] == 0
    result = runner.run(service_plan(work_dir / "older"), newer_schema="allow_expand")
    assert result["rc"] == 1
    assert "contract change(s) 0005_drop_payments_description" in result["msg"] and result["statements"] == []

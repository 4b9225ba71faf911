"""pg_amcheck on intact databases: every index named, the extension and its privilege, check mode."""

from __future__ import annotations

import json

import psycopg
import pytest

from amcheck_cluster import Cluster
from amcheck_helpers import SERVICE_ROLE, Amcheck


def toast_indexes(cluster: Cluster, db: str, schema: str) -> list[str]:
    """The indexes of the TOAST tables of the schema's tables (only tables with a variable-length column have one)."""
    rows = cluster.execute("SELECT c.reltoastrelid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname = %s AND c.relkind = 'r' AND c.reltoastrelid <> 0", db, (schema,))
    return [f"{toast}_index" for (toast,) in rows]


def extension_rows(cluster: Cluster, db: str) -> list[tuple[str]]:
    return cluster.execute("SELECT extname FROM pg_extension WHERE extname = 'amcheck'", db)


def test_healthy_database_passes_with_every_index_named(amcheck: Amcheck, cluster: Cluster, service_db: str) -> None:
    result = amcheck(service_db)

    assert result["rc"] == 0 and not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    declared = ["public.customers_pkey", "public.customers_email_key", "public.payments_pkey", "public.payments_customer_idx",
                "public.receipts_pkey"]
    toasted = toast_indexes(cluster, service_db, "public")
    assert len(toasted) == 2, "customers and receipts have a TOAST table"
    assert sorted(result["indexes"]) == sorted(declared + toasted)
    assert result["tables"] == ["public.customers", "public.payments", "public.receipts"]
    assert not any(name.startswith("billing.") for name in result["indexes"]), "only the default schema public is checked"
    assert result["corrupt"] == [] and result["errors"] == [] and result["invalid_indexes"] == []
    assert [c["index"] for c in result["checks"]] == result["indexes"] and all(c["ok"] for c in result["checks"])
    pages = {c["index"]: c["pages"] for c in result["checks"]}
    assert pages["public.payments_pkey"] > 1, "the index spans several pages"
    assert result["duration"] > 0
    assert result["extension"]["created"] is False and result["extension"]["schema"] == "public"
    assert result["heapallindexed"] is False


def test_other_schema_and_heapallindexed(amcheck: Amcheck, cluster: Cluster, service_db: str) -> None:
    result = amcheck(service_db, schema="billing", heapallindexed=True)

    assert result["rc"] == 0, result.get("msg")
    declared = ["billing.invoices_number_key", "billing.invoices_pkey"]
    assert sorted(result["indexes"]) == sorted(declared + toast_indexes(cluster, service_db, "billing"))
    assert result["tables"] == ["billing.invoices"] and result["heapallindexed"] is True


def test_missing_extension_without_admin_fails_clearly(amcheck: Amcheck, cluster: Cluster, bare_db: str) -> None:
    result = amcheck(bare_db)

    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == (
        f"the amcheck extension is not installed in database '{bare_db}', and role '{SERVICE_ROLE}' cannot create it or "
        f"grant itself the function (that needs a superuser): run as one, in '{bare_db}': CREATE EXTENSION amcheck; "
        f'GRANT EXECUTE ON FUNCTION bt_index_check(regclass, boolean) TO "{SERVICE_ROLE}"; or set admin_url to such a role')
    assert result["indexes"] == []
    assert extension_rows(cluster, bare_db) == []


def test_extension_without_the_grant_is_named(amcheck: Amcheck, cluster: Cluster, bare_db: str) -> None:
    cluster.execute("CREATE EXTENSION amcheck", bare_db)

    result = amcheck(bare_db)

    assert result["failed"] is True
    assert f"role '{SERVICE_ROLE}' may not execute public.bt_index_check in database '{bare_db}'" in result["msg"]
    assert f'GRANT EXECUTE ON FUNCTION "public".bt_index_check(regclass, boolean) TO "{SERVICE_ROLE}";' in result["msg"]


def test_admin_url_creates_the_extension_and_grants_the_check(amcheck: Amcheck, cluster: Cluster, bare_db: str) -> None:
    admin_url = cluster.dsn("postgres")  # its database is not the one checked: the extension goes into db

    result = amcheck(bare_db, admin_url=admin_url)

    assert result["rc"] == 0, result.get("msg")
    assert result["changed"] is True
    assert result["extension"] | {"version": None} == {"schema": "public", "version": None, "created": True, "granted": True}
    assert "public.payments_pkey" in result["indexes"]
    assert extension_rows(cluster, bare_db) == [("amcheck",)]
    assert cluster.password not in json.dumps(result), "the admin password is never returned"

    again = amcheck(bare_db, admin_url=admin_url)
    assert again["changed"] is False and again["indexes"] == result["indexes"]


def test_admin_url_without_the_privilege_fails_naming_it(amcheck: Amcheck, cluster: Cluster, bare_db: str) -> None:
    result = amcheck(bare_db, admin_url=cluster.dsn("postgres", SERVICE_ROLE, amcheck.service_password))

    assert result["failed"] is True
    assert f"the admin_url role '{SERVICE_ROLE}' could not fix it" in result["msg"]
    assert 'permission denied to create extension "amcheck"' in result["msg"]
    assert extension_rows(cluster, bare_db) == []


def test_check_mode_runs_the_same_checks(amcheck: Amcheck, service_db: str) -> None:
    normal, checked = amcheck(service_db), amcheck(service_db, check=True)

    assert checked["rc"] == 0 and checked["changed"] is False
    assert checked["indexes"] == normal["indexes"] and checked["tables"] == normal["tables"]


def test_check_mode_never_creates_the_extension(amcheck: Amcheck, cluster: Cluster, bare_db: str) -> None:
    result = amcheck(bare_db, check=True, admin_url=cluster.dsn("postgres"))

    assert result["rc"] == 0 and result["changed"] is True
    assert result["extension"]["created"] is True and result["indexes"] == []
    assert "nothing was checked in check mode" in json.dumps(result["warnings"])
    assert extension_rows(cluster, bare_db) == []


def test_invalid_index_is_named_and_not_checked(amcheck: Amcheck, cluster: Cluster, service_db: str) -> None:
    with cluster.connect(service_db) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY payments_amount_uniq ON payments (amount)")  # duplicates: left INVALID

    result = amcheck(service_db)

    assert result["rc"] == 0, result.get("msg")
    assert result["invalid_indexes"] == [{"index": "public.payments_amount_uniq", "table": "public.payments",
                                          "reason": "INVALID (a failed concurrent build)"}]
    assert "public.payments_amount_uniq" not in result["indexes"] and "public.payments_pkey" in result["indexes"]
    assert "index public.payments_amount_uniq is INVALID and was not checked" in json.dumps(result["warnings"])

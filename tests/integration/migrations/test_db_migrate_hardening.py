"""db_migrate against a real PostgreSQL 15: what PostgreSQL's lexer reads is what the plan check reads, a script that
ends its transaction fails clearly, and a DATABASE_URL is used as libpq reads it (percent-encoding, sslmode)."""

from __future__ import annotations

import secrets
import sys
import typing as t
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from migration_cluster import OMIT, SERVICE_PLAN, Cluster, ModuleRunner
from migration_plans import append_change, service_plan

pytestmark = pytest.mark.timeout(180)

# PostgreSQL reads x€$$ as one identifier; a splitter that takes $$ as a dollar quote would not see the COMMIT
HIDDEN_COMMIT = "CREATE TABLE leftover (id int);\nSELECT 1 AS x\u20ac$$;\nCOMMIT;\nSELECT 1 AS y\u20ac$$;\n"


def relation_exists(cluster: Cluster, database: str, name: str) -> bool:
    with cluster.connect(database) as conn:
        return bool(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0])


def test_a_commit_hidden_behind_a_non_ascii_dollar_is_refused_before_anything_runs(
        runner: ModuleRunner, cluster: Cluster, database: str, work_dir: Path) -> None:
    plan = service_plan(work_dir / "plan", upto="0001_customers")
    append_change(plan, "0099_hidden_commit", HIDDEN_COMMIT, "SELECT 1/0;\n", "DROP TABLE IF EXISTS leftover;\n")
    result = runner.run(plan)
    assert result["rc"] != 0 and "contains COMMIT" in result["msg"], result
    assert not relation_exists(cluster, database, "leftover")
    assert not relation_exists(cluster, database, "customers")  # nothing ran: the plan was refused as a whole


class Failed(Exception):
    """What the module would have failed with."""

    def __init__(self, msg: str, extra: dict[str, t.Any]) -> None:
        super().__init__(msg)
        self.msg, self.extra = msg, extra


class FakeModule:
    """Just what db_migrate.Migration reads of an AnsibleModule."""

    check_mode = False
    _diff = False

    def __init__(self) -> None:
        self.params = {"registry_schema": "payments_deploy", "registry_table": "changes", "retries": 0,
                       "verify_reverts": True, "lock_timeout": "5s", "statement_timeout": "5min"}

    def fail_json(self, msg: str, **extra: t.Any) -> t.NoReturn:
        raise Failed(msg, extra)


def test_a_script_that_ends_its_transaction_fails_clearly(cluster: Cluster, database: str, collections_dir: Path,
                                                          work_dir: Path) -> None:
    if str(collections_dir) not in sys.path:
        sys.path.insert(0, str(collections_dir))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.payments.deploy.plugins.module_utils._migrations import Change
    from ansible_collections.payments.deploy.plugins.modules import db_migrate

    # a change as the plan check would never let through: built by hand to reach the check made while running
    sql = {"deploy": "CREATE TABLE committed_early (id int); COMMIT; CREATE TABLE after_commit (id int)",
           "verify": "SELECT 1/0", "revert": "SELECT 1"}
    change = Change(name="0099_commits", kind="expand", transactional=True, release="9.0.0", requires=(), note="",
                    paths={script: str(work_dir / script / "0099_commits.sql") for script in sql}, sql=sql,
                    checksum="0" * 64)
    migration = db_migrate.Migration(t.cast(t.Any, FakeModule()))
    migration.conn = cluster.connect(database)
    try:
        with pytest.raises(Failed) as caught:
            migration.run_change(change, "deploy")
    finally:
        migration.conn.close()
    assert "ended the transaction it ran in" in caught.value.msg
    assert "is committed and stays: check the database by hand" in caught.value.msg
    assert caught.value.extra["failed_change"]["script"].endswith("deploy/0099_commits.sql")
    assert migration.statements == [change.paths["deploy"]]  # the verify script never ran
    assert relation_exists(cluster, database, "committed_early")  # what the failure message warns about


@pytest.fixture
def odd_role(cluster: Cluster, database: str) -> t.Iterator[tuple[str, str]]:
    """A login role whose password needs percent-encoding in a URL."""
    name, password = f"mig_{secrets.token_hex(4)}", f"p@ss:w/rd%?#&{secrets.token_hex(4)}"
    with cluster.connect("postgres") as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{password}'")
    yield name, password
    for dbname in (database, "postgres"):
        with cluster.connect(dbname) as conn:
            conn.execute(f"DROP OWNED BY {name}")
    with cluster.connect("postgres") as conn:
        conn.execute(f"DROP ROLE {name}")


def test_url_with_a_percent_encoded_password_is_used_as_libpq_reads_it(
        runner: ModuleRunner, cluster: Cluster, database: str, odd_role: tuple[str, str]) -> None:
    role, password = odd_role
    url = f"postgresql://{role}:{quote(password, safe='')}@127.0.0.1:{cluster.port}/{database}?sslmode=disable"
    # login_password and db are not used with url: wrong ones prove it
    result = runner.run(SERVICE_PLAN, url=url, login_password="not-this-one", db="not_this_db", ssl_mode="verify-full")
    assert result["rc"] == 0, result
    assert password not in str(result) and quote(password, safe="") not in str(result)
    with cluster.connect(database) as conn:
        assert {row[0] for row in conn.execute("SELECT applied_by FROM payments_deploy.changes")} == {role}


def test_the_roles_filter_decodes_the_url_for_the_pg_modules(cluster: Cluster, database: str,
                                                             odd_role: tuple[str, str], collections_dir: Path) -> None:
    if str(collections_dir) not in sys.path:
        sys.path.insert(0, str(collections_dir))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.payments.deploy.plugins.filter.pg_conninfo import pg_conninfo

    role, password = odd_role
    parsed = pg_conninfo(f"postgresql://{role}:{quote(password, safe='')}@127.0.0.1:{cluster.port}/{database}"
                         "?sslmode=disable&application_name=probe")
    assert (parsed["user"], parsed["password"], parsed["dbname"], parsed["sslmode"]) == (role, password, database, "disable")
    assert parsed["application_name"] == "probe" and parsed["tls"] is False and parsed["loopback"] is True
    with psycopg.connect(host=parsed["host"], port=parsed["port"], user=parsed["user"], password=parsed["password"],
                         dbname=parsed["dbname"], sslmode=parsed["sslmode"]) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (role, database)
    assert pg_conninfo(f"postgresql://u@db.example.com/{database}?sslmode=verify-full")["tls"] is True
    assert pg_conninfo("postgresql://u@127.0.0.1:5432", errors="report") == {
        "error": "the PostgreSQL URL names no database (postgresql://user:password@host:port/DATABASE): libpq would "
                 "use the login user's default database"}


@pytest.mark.parametrize("url_query, ssl_mode", [("?sslmode=verify-full", "disable"), ("?sslmode=require", "disable"),
                                                 ("", OMIT)])
def test_tls_is_never_downgraded(runner: ModuleRunner, cluster: Cluster, database: str, url_query: str,
                                 ssl_mode: t.Any) -> None:
    """The test server has no TLS: a URL asking for it, or the verify-full default, must fail to connect."""
    url = f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/{database}{url_query}"
    result = runner.run(SERVICE_PLAN, url=url, ssl_mode=ssl_mode)
    assert result["rc"] != 0 and result["msg"].startswith("cannot connect to PostgreSQL as postgres@127.0.0.1"), result
    assert cluster.password not in str(result)
    assert not relation_exists(cluster, database, "customers")


def test_an_empty_db_is_refused_before_connecting(runner: ModuleRunner, cluster: Cluster, database: str) -> None:
    result = runner.run(SERVICE_PLAN, db="")
    assert result["rc"] != 0 and "db must name the database to migrate" in result["msg"], result
    assert result["timings"]["connect"] == 0.0
    with cluster.connect("postgres") as conn:  # the login user's default database stays untouched
        assert conn.execute("SELECT to_regclass('payments_deploy.changes')").fetchone()[0] is None

# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""amcheck on a database: the admin connection URL, the extension and its privilege, the btree indexes of a schema.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

from ansible_collections.payments.deploy.plugins.module_utils._conninfo import ConninfoError, parse_conninfo

# SQLSTATEs PostgreSQL raises for damaged data: XX001 data_corrupted (unreadable page, bad page header),
# XX002 index_corrupted (amcheck's own findings). Anything else means the check could not run.
CORRUPTION_SQLSTATES = frozenset({"XX001", "XX002"})
CHECK_FUNCTION = "bt_index_check(regclass, boolean)"

# Every btree index whose table is in the schema, and the indexes of those tables' TOAST tables; partitioned
# (relkind I) indexes have no storage of their own and temporary ones belong to another session.
INDEXES_SQL = """
SELECT i.indexrelid::int8, ns.nspname, ic.relname, owner_ns.nspname, owner.relname, i.indisvalid,
       pg_relation_size(ic.oid) / current_setting('block_size')::int8
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace ns ON ns.oid = ic.relnamespace
JOIN pg_am am ON am.oid = ic.relam
JOIN pg_class tc ON tc.oid = i.indrelid
JOIN pg_class owner ON owner.oid = tc.oid OR owner.reltoastrelid = tc.oid
JOIN pg_namespace owner_ns ON owner_ns.oid = owner.relnamespace
WHERE am.amname = 'btree' AND ic.relkind = 'i' AND ic.relpersistence <> 't'
  AND owner.relnamespace = %s AND owner.relkind IN ('r', 'm', 'p')
ORDER BY owner.relname, tc.oid = owner.oid DESC, ic.relname
"""

TABLES_SQL = """
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = %s AND c.relkind IN ('r', 'm', 'p') AND c.relpersistence <> 't'
ORDER BY 1
"""


def parse_admin_url(url: str) -> dict[str, str]:
    """libpq's keywords of the admin connection (a ``postgresql://`` URL or a connection string), every one kept and
    decoded (``p%40ss`` is ``p@ss``), as libpq parses them.

    Raises ValueError with a message that never holds the URL (it carries a password).
    """
    try:
        parsed = parse_conninfo(url, "admin_url")
    except ConninfoError as exc:
        raise ValueError(str(exc)) from None
    if not parsed.get("user"):
        raise ValueError("admin_url has no user name (postgresql://user:password@host:port/db)")
    return parsed


def qualified(schema: str, name: str) -> str:
    return f"{schema}.{name}"

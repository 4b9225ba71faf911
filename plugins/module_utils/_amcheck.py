# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""amcheck on a database: the admin connection URL, the extension and its privilege, the btree indexes of a schema.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import typing as t
from urllib.parse import unquote, urlsplit

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


class AdminUrl(t.NamedTuple):
    host: str | None
    port: int | None
    user: str
    password: str | None


def parse_admin_url(url: str) -> AdminUrl:
    """Host, port, user and password of a ``postgresql://user:password@host:port/db`` URL.

    Raises ValueError with a message that never holds the URL (it carries a password).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("admin_url is not a valid URL (its port must be a number)") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("admin_url must be a postgresql://user:password@host:port/db URL "
                         f"(its scheme is {parts.scheme or 'missing'!r})")
    if not parts.username:
        raise ValueError("admin_url has no user name (postgresql://user:password@host:port/db)")
    return AdminUrl(host=unquote(parts.hostname) if parts.hostname else None, port=port, user=unquote(parts.username),
                    password=unquote(parts.password) if parts.password is not None else None)


def qualified(schema: str, name: str) -> str:
    return f"{schema}.{name}"

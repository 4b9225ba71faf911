# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""PostgreSQL connection URLs (a service's DATABASE_URL) parsed the way libpq parses them.

Private to the payments.deploy collection: the interface may change without notice.
libpq (through psycopg) decodes percent-encoding (``p%40ss`` is ``p@ss``) and keeps every query parameter
(``?sslmode=verify-full&sslrootcert=...``), which a generic URL split does not.
"""

from __future__ import annotations

import typing as t

PSYCOPG_IMPORT_ERROR: str | None
try:
    from psycopg.conninfo import conninfo_to_dict
except ImportError:
    import traceback

    PSYCOPG_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# sslmode values under which libpq never talks to the server in clear text.
TLS_MODES = ("require", "verify-ca", "verify-full")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class ConninfoError(ValueError):
    """The URL cannot be used; the message never holds the URL (it carries a password)."""


def parse_database_url(url: str, label: str = "the database URL") -> dict[str, str]:
    """libpq's keywords of ``url`` (``host``, ``port``, ``user``, ``password``, ``dbname``, ``sslmode``, ...), decoded.

    Raises ConninfoError when libpq cannot parse it, when it names no database, or when its sslmode is unknown.
    """
    return parse_conninfo(url, label, require_dbname=True)


def parse_conninfo(url: str, label: str, require_dbname: bool = False) -> dict[str, str]:
    """libpq's keywords of a ``postgresql://`` URL or a ``key=value`` connection string, decoded, every one kept.

    Raises ConninfoError (never quoting the value: it may hold a password) when libpq cannot parse it, when it is a URL
    of another scheme, when a port is not a number, when its sslmode is unknown, or (``require_dbname``) when it names
    no database.
    """
    if PSYCOPG_IMPORT_ERROR is not None:
        raise ConninfoError(f"parsing {label} needs psycopg (3.1 or newer) where this runs")
    if not isinstance(url, str) or not url.strip():
        raise ConninfoError(f"{label} is empty")
    scheme, sep, _rest = url.strip().partition("://")
    if sep and "=" not in scheme and scheme not in ("postgresql", "postgres"):
        raise ConninfoError(f"{label} must be a postgresql://user:password@host:port/db URL or a libpq connection "
                            f"string (its scheme is {scheme!r})")
    try:
        parsed = {key: str(value) for key, value in conninfo_to_dict(url.strip()).items() if value is not None}
    except Exception:  # pylint: disable=broad-except  # libpq's message may quote the password
        raise ConninfoError(f"{label} is not a valid postgresql:// URL or connection string (libpq cannot parse it; "
                            "the value is not shown because it holds a password)") from None
    if any(port.strip() and not port.strip().isdigit() for port in parsed.get("port", "").split(",")):
        raise ConninfoError(f"{label} has a port that is not a number: {parsed['port']!r}")
    if require_dbname and not parsed.get("dbname", "").strip():
        raise ConninfoError(f"{label} names no database (postgresql://user:password@host:port/DATABASE): libpq would "
                            "use the login user's default database")
    if parsed.get("sslmode", "prefer") not in SSL_MODES:
        raise ConninfoError(f"{label} has sslmode={parsed['sslmode']!r}, which is not one of {', '.join(SSL_MODES)}")
    return parsed


def is_loopback(parsed: t.Mapping[str, str]) -> bool:
    """Whether every host of the parsed URL is this machine (a loopback address or a Unix socket directory)."""
    hosts = [host.strip() for host in parsed.get("host", "").split(",")] or [""]
    return all(not host or host.startswith("/") or host in LOOPBACK_HOSTS for host in hosts)


def where(parsed: t.Mapping[str, str]) -> str:
    """``user@host:port/dbname`` of a parsed URL, for messages (never the password)."""
    return (f"{parsed.get('user', '')}@{parsed.get('host', '') or 'localhost'}:{parsed.get('port', '') or 5432}/"
            f"{parsed.get('dbname', '')}")

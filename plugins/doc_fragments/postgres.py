# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options of the modules that talk to PostgreSQL and run its client programs."""

    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server, or the directory of its Unix socket.
    type: str
    default: localhost
  login_port:
    description:
      - TCP port of the PostgreSQL server.
    type: int
    default: 5432
  login_user:
    description:
      - Database role to connect as.
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). Client programs (C(pg_dump), C(pg_restore)) get it only through a temporary password
        file (C(PGPASSFILE), mode 0600, removed when the module exits) whose one entry matches O(login_host), O(login_port)
        and O(login_user) only; never on their command line, never in their environment; it is never logged or returned.
      - When omitted, C(PGPASSWORD) of the module's environment is used the same way, else libpq's C(~/.pgpass).
    type: str
  db:
    description:
      - Name of the database.
    type: str
    required: true
  ssl_mode:
    description:
      - libpq C(sslmode) of every connection. Use V(verify-full) with O(ca_cert) in production.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file (PEM) that the server's certificate must chain to (libpq C(sslrootcert)).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for each connection to the server.
    type: int
    default: 10
  pg_bin_dir:
    description:
      - Directory holding C(pg_dump) and C(pg_restore).
      - By default the programs of the server's major version in C(/usr/lib/postgresql/<major>/bin) are used, else the
        newest newer ones there, else the first on C(PATH). Their major version must not be older than the server's
        (a C(pg_dump) older than the server refuses to dump it); the module checks this before anything runs.
    type: path
requirements:
  - psycopg >= 3.1 (C(psycopg[binary]) or C(psycopg) with libpq) on the target host
  - the PostgreSQL client programs C(pg_dump) and C(pg_restore) on the target host
notes:
  - Connection settings reach client programs through the libpq environment (C(PGHOST), C(PGPORT), C(PGUSER), C(PGPASSFILE),
    C(PGSSLMODE), C(PGSSLROOTCERT), C(PGCONNECT_TIMEOUT)). Client programs get a minimal environment otherwise (C(PATH),
    C(HOME), C(LANG), C(LC_*), C(TZ), C(TMPDIR), C(PGSSLCERT), C(PGSSLKEY), C(PGSSLCRL)), so no C(ENCRYPTION_KEY), no AWS
    credentials, no C(PGPASSWORD) and no C(PGSERVICE) (a service file would outrank the connection set here).
  - Database names reach client programs as C(--dbname=dbname='<name>'), so that libpq never reads a name as a connection
    string.
"""

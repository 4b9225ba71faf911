# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options of the modules that talk to PostgreSQL and run its client programs."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - The whole connection as a C(postgresql://) URL or a libpq connection string (C(host=... dbname=...)), for
        example the service's C(DATABASE_URL). libpq parses it (psycopg's C(conninfo_to_dict)), so a percent-encoded
        password (C(p%40ss)) is decoded and every parameter is kept and used, by psycopg and by the client programs
        (C(sslmode), C(sslrootcert), C(sslcert), C(sslkey), C(sslcrl), C(options), C(target_session_attrs),
        C(application_name), several hosts, ...).
      - Each connection option below that is set overrides the same part of the URL (O(login_host) its host,
        O(login_port) its port, O(login_user) its user, O(login_password) its password, O(db) its database, O(ssl_mode)
        its C(sslmode), O(ca_cert) its C(sslrootcert), O(connect_timeout) its C(connect_timeout)); the defaults apply
        to what neither sets.
      - A URL that libpq cannot parse, of another scheme, with a port that is not a number, with an unknown C(sslmode),
        or that sets C(service) or C(passfile) (either would outrank the connection and the password file set here)
        fails before anything is connected to. Never logged or returned, nor shown in a message.
    type: str
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server, or the directory of its Unix socket.
      - Overrides the host of O(url). C(localhost) when neither sets one.
    type: str
  login_port:
    description:
      - TCP port of the PostgreSQL server.
      - Overrides the port of O(url). C(5432) when neither sets one.
    type: int
  login_user:
    description:
      - Database role to connect as.
      - Overrides the user of O(url). C(postgres) when neither sets one.
    type: str
  login_password:
    description:
      - Password of O(login_user); overrides the password of O(url). Client programs (C(pg_dump), C(pg_restore)) get it
        only through a temporary password file (C(PGPASSFILE), mode 0600, removed when the module exits) whose entries
        match the connection's hosts, ports and user only; never on their command line, never in their environment; it
        is never logged or returned.
      - When neither sets one, C(PGPASSWORD) of the module's environment is used the same way, else libpq's C(~/.pgpass).
    type: str
  db:
    description:
      - Name of the database; overrides the database of O(url).
      - One of O(db) and O(url) (with a database) is required.
    type: str
  ssl_mode:
    description:
      - libpq C(sslmode) of every connection; overrides the C(sslmode) of O(url). V(prefer) when neither sets one.
        Use V(verify-full) with O(ca_cert) in production.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file (PEM) that the server's certificate must chain to (libpq C(sslrootcert)); overrides the
        C(sslrootcert) of O(url).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for each connection to the server, at least 1; overrides the C(connect_timeout) of O(url).
        V(10) when neither sets one.
    type: int
requirements:
  - psycopg >= 3.1 (C(psycopg[binary]) or C(psycopg) with libpq) on the target host
"""

    # The modules that run pg_dump and pg_restore (pg_backup, pg_restore_backup) add this to the options above.
    CLIENT_PROGRAMS = r"""
options:
  pg_bin_dir:
    description:
      - Directory holding C(pg_dump) and C(pg_restore).
      - By default the programs of the server's major version in C(/usr/lib/postgresql/<major>/bin) are used, else the
        newest newer ones there, else the first on C(PATH). Their major version must not be older than the server's
        (a C(pg_dump) older than the server refuses to dump it); the module checks this before anything runs.
    type: path
requirements:
  - the PostgreSQL client programs C(pg_dump) and C(pg_restore) on the target host
notes:
  - Connection settings reach client programs through the libpq environment (C(PGHOST), C(PGPORT), C(PGUSER), C(PGPASSFILE),
    C(PGSSLMODE), C(PGSSLROOTCERT), C(PGCONNECT_TIMEOUT)); the other parameters of O(url) (C(sslcert), C(options), ...)
    through their C(--dbname) connection string, each value quoted. Client programs get a minimal environment otherwise (C(PATH),
    C(HOME), C(LANG), C(LC_*), C(TZ), C(TMPDIR), C(PGSSLCERT), C(PGSSLKEY), C(PGSSLCRL)), so no C(ENCRYPTION_KEY), no AWS
    credentials, no C(PGPASSWORD) and no C(PGSERVICE) (a service file would outrank the connection set here).
  - Database names reach client programs as C(--dbname=dbname='<name>' ...), so that libpq never reads a name as a
    connection string.
"""

    # The group of the modules that take the connection options above (meta/runtime.yml).
    ACTION_GROUP = r"""
attributes:
  action_group:
    description: Use C(group/payments.deploy.postgres) in C(module_defaults) to set its options once for every module of the group.
    support: full
    membership:
      - payments.deploy.postgres
"""

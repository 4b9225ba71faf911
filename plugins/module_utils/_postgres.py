# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""PostgreSQL connections (psycopg and the libpq environment of client programs) and client programs run as pipelines.

Private to the payments.deploy collection: the interface may change without notice.
Client programs get a minimal environment (no secret of the module: no ENCRYPTION_KEY, no AWS keys, no PGPASSWORD); the
password reaches them only through a 0600 password file (``PGPASSFILE``) that names the connection's own host, port and
user, and is removed when the module exits. Database names reach them only as ``dbname='...'``, never as a bare
``--dbname`` value, which libpq would read as a connection string when it holds ``=``.
"""

from __future__ import annotations

import atexit
import fcntl
import glob
import hashlib
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import traceback
import typing as t

from ansible_collections.payments.deploy.plugins.module_utils._conninfo import SSL_MODES, ConninfoError, parse_conninfo

try:
    import psycopg
except ImportError:
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None

PG_LIB_DIR = "/usr/lib/postgresql"
APPLICATION_NAME = "payments.deploy"
MASK = "********"
# Linux lets a pipe hold this much when asked (F_SETPIPE_SZ); the default 64 KiB stalls the producer too often.
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031
# What a client program keeps of the module's environment. Not PGSERVICE/PGSERVICEFILE (a service file outranks the PG*
# variables set here, so it could send the password elsewhere), not PGPASSWORD, ENCRYPTION_KEY or AWS_* (secrets).
_CHILD_ENV_KEEP = {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PGSSLCERT", "PGSSLKEY", "PGSSLCRL", "PGPASSFILE"}


# Each connection option and the libpq keyword it sets; an option that is set wins over the same keyword of ``url``.
OPTION_KEYWORDS = {"login_host": "host", "login_port": "port", "login_user": "user", "login_password": "password",
                   "db": "dbname", "ssl_mode": "sslmode", "ca_cert": "sslrootcert", "connect_timeout": "connect_timeout"}
# What applies when neither an option nor ``url`` sets it.
DEFAULTS = {"host": "localhost", "port": "5432", "user": "postgres", "sslmode": "prefer", "connect_timeout": "10"}
# Keywords that reach client programs through the libpq environment (see ``Connection.env``); every other keyword of
# ``url`` reaches them in their ``--dbname`` connection string (see ``Connection.conninfo``), the password in neither.
_ENV_KEYWORDS = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
                 "connect_timeout": "PGCONNECT_TIMEOUT"}
# A url may not name a service file or a password file: either would outrank the connection and the password file set
# here (and could hand the password to another server).
_REFUSED_KEYWORDS = ("service", "passfile")


def postgres_argument_spec(client_programs: bool = True, **defaults: t.Any) -> dict[str, dict[str, t.Any]]:
    """Connection options (documented in the payments.deploy.postgres fragment, ``pg_bin_dir`` in its CLIENT_PROGRAMS
    part, left out when ``client_programs`` is false). No option has a default of its own: an option that is set
    overrides ``url``, and DEFAULTS apply to what neither sets; a module with a precedence of its own (db_migrate) passes
    its defaults as ``defaults`` (option name: value)."""
    spec: dict[str, dict[str, t.Any]] = {
        "url": {"type": "str", "no_log": True},
        "login_host": {"type": "str"},
        "login_port": {"type": "int"},
        "login_user": {"type": "str"},
        "login_password": {"type": "str", "no_log": True},
        "db": {"type": "str"},
        "ssl_mode": {"type": "str", "choices": list(SSL_MODES)},
        "ca_cert": {"type": "path"},
        "connect_timeout": {"type": "int"},
        "pg_bin_dir": {"type": "path"},
    }
    if not client_programs:
        del spec["pg_bin_dir"]
    for option, value in defaults.items():
        spec[option]["default"] = value
    return spec


class PostgresError(Exception):
    """A query or a client program failed; the message never holds the password."""


def connection_keywords(params: t.Mapping[str, t.Any], label: str = "url") -> tuple[dict[str, str], list[str]]:
    """libpq's keywords of the connection: every keyword of ``params["url"]``, each connection option that is set in
    place of the URL's, then DEFAULTS; and the problems found (the URL is then left out)."""
    keywords: dict[str, str] = {}
    problems = []
    if params.get("url") is not None:
        try:
            keywords = parse_conninfo(params["url"], label)
        except ConninfoError as exc:
            problems.append(str(exc))
        refused = [key for key in _REFUSED_KEYWORDS if key in keywords]
        if refused:
            problems.append(f"{label} must not set {' or '.join(refused)}: the connection and the password are the "
                            "module's own")
            keywords = {}
    for option, keyword in OPTION_KEYWORDS.items():
        if params.get(option) is not None:
            keywords[keyword] = str(params[option])
    for keyword, value in DEFAULTS.items():
        if not keywords.get(keyword):
            keywords[keyword] = value
    if not keywords["connect_timeout"].strip().isdigit() or int(keywords["connect_timeout"]) < 1:
        problems.append("connect_timeout must be at least 1 second")
        keywords["connect_timeout"] = DEFAULTS["connect_timeout"]
    return keywords, problems


class Connection:
    """Where and how to connect, for psycopg and for client programs: ``url``'s keywords, the options that are set in
    place of the URL's own, and DEFAULTS. ``problems`` lists what is wrong with them (checked by the module first)."""

    def __init__(self, params: t.Mapping[str, t.Any]) -> None:
        keywords, self.problems = connection_keywords(params)
        # PGPASSWORD of the module's own environment is what libpq would use anyway; taken here so that client programs,
        # which do not inherit it, get it through the password file, and so that messages mask it
        self.password: str | None = keywords.pop("password", None) or os.environ.get("PGPASSWORD") or None
        self.dbname: str | None = keywords.pop("dbname", None)
        self.keywords = keywords
        self.host: str = keywords["host"]
        self.port: int | str = int(keywords["port"]) if keywords["port"].isdigit() else keywords["port"]
        self.user: str = keywords["user"]
        self.ssl_mode: str = keywords["sslmode"]
        self.ca_cert: str | None = keywords.get("sslrootcert")
        self.connect_timeout: int = int(keywords["connect_timeout"])
        self._secrets = [secret for secret in (self.password, params.get("url")) if secret]
        self._passfile: str | None = None

    def extra_keywords(self) -> dict[str, str]:
        """The keywords beyond those of the libpq environment (``options``, ``sslcert``, ``target_session_attrs``, ...)."""
        return {key: value for key, value in self.keywords.items() if key not in _ENV_KEYWORDS}

    def conninfo(self, dbname: str) -> str:
        """The ``--dbname`` value of a client program: ``dbname='<name>'`` and the extra keywords, each value quoted,
        so that libpq reads the name as a name only (see ``dbname_conninfo``); never the password."""
        return " ".join([dbname_conninfo(dbname)] + [f"{key}={_quote_conninfo(value)}"
                                                     for key, value in sorted(self.extra_keywords().items())])

    def env(self) -> dict[str, str]:
        """libpq variables for client programs; never the password (see ``passfile``)."""
        env = {variable: self.keywords[key] for key, variable in _ENV_KEYWORDS.items() if self.keywords.get(key)}
        env["PGAPPNAME"] = APPLICATION_NAME
        return env

    def child_env(self) -> dict[str, str]:
        """The environment of a client program: a few harmless variables of ours, the connection's libpq variables and,
        with a password, ``PGPASSFILE``."""
        env = base_child_env()
        env.update(self.env())
        if self.password:
            env["PGPASSFILE"] = self.passfile()
        return env

    def passfile(self) -> str:
        """A password file (mode 0600, in a private 0700 directory) matching only this connection's host(s), port and
        user, so that libpq hands the password to no other server; created once, removed at exit (``remove_passfile``)."""
        if self._passfile is None:
            if self.password is None:
                raise PostgresError("no password to put in a password file")
            if "\n" in self.password or "\r" in self.password:
                raise PostgresError("login_password holds a line break, which a libpq password file cannot carry")
            hosts = self.host.split(",")
            ports = str(self.port).split(",")
            ports = ports * len(hosts) if len(ports) == 1 else ports  # libpq pairs the n-th host with the n-th port
            pairs = [(host or "localhost", port or DEFAULTS["port"]) for host, port in zip(hosts, ports)]
            # libpq looks a socket in its default directory up as "localhost"
            pairs += [("localhost", port) for host, port in pairs if host.startswith("/")]
            lines = "".join(":".join(_pgpass_field(f) for f in (host, port, "*", self.user, self.password)) + "\n"
                            for host, port in dict.fromkeys(pairs))
            directory = tempfile.mkdtemp(prefix="payments-deploy-pg-")
            path = os.path.join(directory, "pgpass")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(lines)
            self._passfile = path
            atexit.register(self.remove_passfile)
        return self._passfile

    def remove_passfile(self) -> None:
        if self._passfile is None:
            return
        for remove, path in ((os.unlink, self._passfile), (os.rmdir, os.path.dirname(self._passfile))):
            try:
                remove(path)
            except FileNotFoundError:
                pass
        self._passfile = None

    def describe(self) -> dict[str, t.Any]:
        """The non-secret connection settings, for results."""
        return {"host": self.host, "port": self.port, "user": self.user, "ssl_mode": self.ssl_mode, "ca_cert": self.ca_cert}

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def connect(self, dbname: str, autocommit: bool = True) -> t.Any:
        kwargs: dict[str, t.Any] = {"application_name": APPLICATION_NAME, **self.keywords, "dbname": dbname}
        if self.password:
            kwargs["password"] = self.password
        try:
            return psycopg.connect(autocommit=autocommit, **kwargs)
        except psycopg.Error as exc:
            raise PostgresError(f"cannot connect to database {dbname!r} on {self.host}:{self.port} as {self.user}: "
                                f"{self.scrub(str(exc)).strip()}") from None


class Session:
    """A psycopg connection that records the SQL it runs (for the module's ``queries`` result) and scrubs its errors."""

    def __init__(self, conn: Connection, dbname: str, queries: list[str], autocommit: bool = True) -> None:
        self.dbname = dbname
        self.queries = queries
        self._scrub = conn.scrub
        self.raw = conn.connect(dbname, autocommit)

    def execute(self, sql: str, params: tuple[t.Any, ...] | None = None, record: bool = True) -> t.Any:
        if record:
            self.queries.append(sql if params is None else f"{sql} -- {list(params)!r}")
        try:
            return self.raw.execute(sql, params)
        except psycopg.Error as exc:
            raise PostgresError(f"{sql!r} in database {self.dbname!r} failed: {self._scrub(str(exc)).strip()}") from None

    def value(self, sql: str, params: tuple[t.Any, ...] | None = None, record: bool = True) -> t.Any:
        row = self.execute(sql, params, record).fetchone()
        return None if row is None else row[0]

    def cancel(self) -> None:
        """Cancel the query running in this session (from another thread); best effort."""
        try:
            self.raw.cancel_safe(timeout=5)
        except (psycopg.Error, OSError):
            pass

    def close(self) -> None:
        try:
            self.raw.close()
        except psycopg.Error:
            pass


def base_child_env() -> dict[str, str]:
    """The few harmless variables of the module's environment that a client program keeps."""
    return {k: v for k, v in os.environ.items() if k in _CHILD_ENV_KEEP or k.startswith("LC_")}


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def dbname_conninfo(name: str) -> str:
    """``dbname='<name>'``, for ``--dbname``: a connection string that sets the database name only. A bare name holding
    ``=`` (``host=elsewhere dbname=x``) or starting with ``postgresql://`` would be read by libpq as connection parameters."""
    return "dbname=" + _quote_conninfo(name)


def _quote_conninfo(value: str) -> str:
    """A connection string value, always quoted (libpq reads ``\\'`` and ``\\\\`` inside quotes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def server_version(session: Session) -> tuple[int, str]:
    """``(server_version_num, server_version)``, e.g. ``(150018, '15.18')``."""
    return int(session.value("SHOW server_version_num")), str(session.value("SHOW server_version")).split()[0]


def major_of(version_num: int) -> int:
    """150018 -> 15; before PostgreSQL 10 the major had two parts (90624 -> 9, for 9.6), which this does not tell apart."""
    return version_num // 10000


def client_version(program: str) -> tuple[int, str]:
    """``(major, version)`` of a client program from ``--version``, e.g. ``(15, '15.18')``."""
    proc = subprocess.run([program, "--version"], capture_output=True, text=True, check=False, timeout=30,  # pylint: disable=ansible-bad-function
                          env=base_child_env())
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", proc.stdout)
    if proc.returncode != 0 or not match:
        raise PostgresError(f"cannot tell the version of {program}: {(proc.stdout + proc.stderr).strip()!r}")
    return int(match.group(1)), match.group(0).split()[-1]


def find_client(name: str, pg_bin_dir: str | None, server_major: int) -> str:
    """The client program ``name``: from ``pg_bin_dir`` when set, else the newest packaged one that is not older than the
    server, else the first on PATH."""
    if pg_bin_dir:
        path = os.path.join(pg_bin_dir, name)
        if not os.access(path, os.X_OK):
            raise PostgresError(f"{name} not found or not executable in pg_bin_dir {pg_bin_dir}")
        return path
    packaged = []
    for path in glob.glob(os.path.join(PG_LIB_DIR, "*", "bin", name)):
        major = os.path.basename(os.path.dirname(os.path.dirname(path)))
        if major.isdigit() and int(major) >= server_major and os.access(path, os.X_OK):
            packaged.append((int(major) != server_major, int(major), path))  # the server's own major first
    if packaged:
        return sorted(packaged)[0][2]
    found = shutil.which(name)
    if not found:
        raise PostgresError(f"{name} not found in {PG_LIB_DIR}/<major>/bin nor on PATH: install the PostgreSQL "
                            f"{server_major} client programs or set pg_bin_dir")
    return found


def require_client(program: str, server_major: int, what: str) -> str:
    """Version of ``program``; fails when its major is older than ``server_major``."""
    major, version = client_version(program)
    if major < server_major:
        raise PostgresError(f"{program} is version {version}, older than {what} (major {server_major}): "
                            f"install the PostgreSQL {server_major} client programs or set pg_bin_dir")
    return version


def table_row_counts(session: Session) -> dict[str, int]:
    """Exact row counts of the user tables pg_dump dumps data for (not partitioned parents, not extension members)."""
    tables = session.execute(
        """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind = 'r' AND c.relpersistence = 'p'
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
           ORDER BY 1, 2""").fetchall()
    counts = {}
    for schema, table in tables:
        counts[f"{schema}.{table}"] = int(session.value(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(table)}", record=False))
    session.queries.append(f"SELECT count(*) FROM each of the {len(counts)} tables above")
    return counts


def compare_row_counts(expected: t.Mapping[str, int], actual: t.Mapping[str, int]) -> list[str]:
    """Differences between two sets of row counts, one sentence each; empty when they agree."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            problems.append(f"table {table} is missing")
        elif table not in expected:
            problems.append(f"table {table} was not in the backup")
        elif int(expected[table]) != actual[table]:
            problems.append(f"table {table} has {actual[table]} rows instead of {expected[table]}")
    return problems


def database_info(session: Session, name: str) -> dict[str, t.Any] | None:
    """Owner, encoding, locale and connection settings of database ``name``; None when it does not exist."""
    provider = ", d.datlocprovider, d.daticulocale" if session.raw.info.server_version >= 150000 else ", 'c', NULL"
    row = session.execute(f"SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, "
                          f"d.datallowconn, d.datconnlimit{provider} FROM pg_database d WHERE d.datname = %s", (name,)).fetchone()
    if row is None:
        return None
    keys = ("owner", "encoding", "collate", "ctype", "allow_connections", "connection_limit", "locale_provider", "icu_locale")
    return dict(zip(keys, row))


def create_database_sql(name: str, like: t.Mapping[str, t.Any], owner: str | None) -> str:
    """CREATE DATABASE ``name`` from template0 with the encoding and locale of ``like`` (see database_info)."""
    sql = (f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0 ENCODING {quote_literal(like['encoding'])} "
           f"LC_COLLATE {quote_literal(like['collate'])} LC_CTYPE {quote_literal(like['ctype'])}")
    if like.get("locale_provider") == "i":
        sql += f" LOCALE_PROVIDER icu ICU_LOCALE {quote_literal(like['icu_locale'])}"
    if owner:
        sql += f" OWNER {quote_ident(owner)}"
    return sql


# Settings whose value is a list of separately quoted items (as pg_dumpall writes them).
_LIST_SETTINGS = {"search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries"}


def copy_database_settings_sql(session: Session, source: str, target: str) -> list[str]:
    """GRANT/REVOKE and ALTER DATABASE SET statements giving ``target`` the privileges and settings of ``source``.

    pg_restore restores neither (they belong to the database, not to its contents) unless it creates the database itself.
    """
    statements = []
    name = quote_ident(target)
    if session.value("SELECT datacl IS NOT NULL FROM pg_database WHERE datname = %s", (source,)):
        statements.append(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
        grants = session.execute(
            """SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                      a.privilege_type, a.is_grantable
               FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s ORDER BY 1, 2""", (source,)).fetchall()
        for grantee, privilege, grantable in grants:
            statements.append(f"GRANT {privilege} ON DATABASE {name} TO {grantee}" + (" WITH GRANT OPTION" if grantable else ""))
    settings = session.execute("""SELECT unnest(s.setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                                  WHERE d.datname = %s AND s.setrole = 0""", (source,)).fetchall()
    for (setting,) in settings:
        key, value = setting.split("=", 1)
        if key in _LIST_SETTINGS:
            rendered = ", ".join(quote_literal(item.strip().strip('"')) for item in value.split(","))
        else:
            rendered = quote_literal(value)
        statements.append(f"ALTER DATABASE {name} SET {quote_ident(key)} TO {rendered}")
    return statements


def sessions_on(session: Session, dbname: str) -> int:
    return int(session.value("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)))


# Lines of a plain dump that differ between two dumps of the same schema: the random \restrict key of
# PostgreSQL 15.14+, comments (dump dates, versions), blank lines and the session settings at the top.
_VOLATILE = re.compile(r"^(\\(un)?restrict\s|--|\s*$|SET\s+\w+\s*=|SELECT pg_catalog\.set_config\('search_path')")


def normalise_schema(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if not _VOLATILE.match(line))


def schema_fingerprint(text: str) -> str:
    """``sha256:<hex>`` of a ``pg_dump --schema-only`` plain dump, stable across runs and pg_dump minor versions."""
    return "sha256:" + hashlib.sha256(normalise_schema(text).encode("utf-8")).hexdigest()


def enlarge_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # not Linux, or above the limit: the default size works, slower


class Child:
    """One client program of a pipeline, started without a shell; stderr kept (scrubbed) for the error message."""

    def __init__(self, argv: list[str], conn: Connection, stdin: t.Any = subprocess.DEVNULL, stdout: t.Any = subprocess.PIPE) -> None:
        self.argv = argv
        self._scrub = conn.scrub
        self._stderr = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
        self._stderr_text: str | None = None
        # Not AnsibleModule.run_command: it collects the whole output, and a dump must be streamed.
        # Each program gets its own session, so a signal meant for this module is not delivered to it (and vice versa).
        self.process = subprocess.Popen(  # pylint: disable=consider-using-with,ansible-bad-function
            argv, stdin=stdin, stdout=stdout, stderr=self._stderr, env=conn.child_env(), start_new_session=True)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                enlarge_pipe(pipe.fileno())

    @property
    def name(self) -> str:
        return os.path.basename(self.argv[0])

    def stderr(self) -> str:
        if self._stderr_text is None:
            self._stderr.seek(0)
            self._stderr_text = self._scrub(self._stderr.read().decode("utf-8", "replace")).strip()
            self._stderr.close()
        return self._stderr_text

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout=timeout)

    def check(self, timeout: float | None = None) -> str:
        """Wait for the exit; raise when it failed. Returns its stderr (warnings)."""
        code = self.wait(timeout)
        errors = self.stderr()
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise PostgresError(f"{self.name} {how}" + (f": {errors}" if errors else " without a message"))
        return errors

    def feed(self, data: bytes) -> None:
        """Write to the program's stdin; a program that exited early raises PostgresError with its own message."""
        try:
            self.process.stdin.write(data)
        except (BrokenPipeError, ValueError):
            self.close_stdin()
            self.check()
            raise PostgresError(f"{self.name} stopped reading its input") from None

    def close_stdin(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                try:
                    pipe.close()
                except OSError:
                    pass
        if not self._stderr.closed:
            self._stderr.close()


def run_capture(argv: list[str], conn: Connection, timeout: float = 600) -> str:
    """Run a client program to its end and return its stdout (for small outputs, e.g. a schema-only dump)."""
    proc = subprocess.run(argv, capture_output=True, env=conn.child_env(), check=False, timeout=timeout)  # pylint: disable=ansible-bad-function
    if proc.returncode != 0:
        how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited with status {proc.returncode}"
        raise PostgresError(f"{os.path.basename(argv[0])} {how}: {conn.scrub(proc.stderr.decode('utf-8', 'replace')).strip()}")
    return proc.stdout.decode("utf-8", "replace")


class Feeder:
    """Hands data to ``write`` (for example a child's stdin) from its own thread, so that producing the next piece
    (decrypting, decompressing) overlaps with the write. ``close`` waits for the last write; errors surface on the next call."""

    def __init__(self, write: t.Callable[[bytes], None], depth: int = 8) -> None:
        self._write = write
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(data)
                except BaseException as exc:  # pylint: disable=broad-exception-caught
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __call__(self, data: bytes) -> None:
        self._raise()
        self._queue.put(data)

    def close(self) -> None:
        """Wait until everything was written; raise the first error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def close_quietly(self) -> None:
        """Stop after a failure elsewhere (the reader of the data was killed): its errors no longer matter."""
        try:
            self.close()
        except Exception:  # pylint: disable=broad-exception-caught
            pass

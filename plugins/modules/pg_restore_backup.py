#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_restore_backup
short_description: Restore a backup made by pg_backup into a new database and swap it in, keeping the replaced database
version_added: 0.1.0
description:
  - Checks the manifest first, its structure and types, then its HMAC (under a key derived from the encryption key), before
    anything in it is used. A manifest without an HMAC (written before manifests were authenticated) is refused, since
    nothing would tell it from another backup's. Files are located by the backup id, never by a path in the manifest.
  - Fetches a backup made by M(payments.deploy.pg_backup) (from a local directory or S3), decrypting and decompressing it
    while checking every chunk's authentication tag, the last-chunk flag, the zstd checksum, the sha256 of the stored
    object against the manifest and that the object was made for this backup (its header binds the backup id, database
    and creation time). A tampered, truncated, reordered, swapped or wrongly keyed backup fails with a message saying which.
  - By default the authenticated chunks stream straight into C(pg_restore) of the new database (O(verify_first=false)).
    Damage found part-way drops the new database, and O(target_db) is never touched. With O(verify_first=true) the whole
    backup is checked into a temporary file first, and a damaged backup fails before any database is created.
  - Restores it with C(pg_restore) into a new database C(<target_db>_restore_<UTC time>) with the owner, encoding, locale,
    privileges (C(GRANT ... ON DATABASE)) and settings (C(ALTER DATABASE ... SET)) of the database it replaces, and compares
    its per-table row counts with those recorded in the manifest.
  - Then swaps the names; the replaced database is kept, never dropped. New connections to O(target_db) are refused, its
    sessions terminated (O(terminate_connections)), and in one transaction it is renamed
    C(<target_db>_before_restore_<UTC time>) and the restored database renamed O(target_db). The kept database accepts
    connections again afterwards (for reconciliation).
  - When anything fails after the new database was created (the restore, its verification, the swap, an unexpected
    error), the new database is dropped and O(target_db) is left as it was.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.postgres
  - payments.deploy.postgres.client_programs
  - payments.deploy.postgres.action_group
  - payments.deploy.s3
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Fetches and verifies the backup completely (decryption, decompression, sha256 and a full C(pg_restore) parse of
      the archive, nothing written to disk) and reports what it would run; creates, renames and drops nothing.
  diff_mode:
    support: full
    details: The databases before and after.
  platform:
    platforms: posix
requirements:
  - zstandard on the target host
  - cryptography on the target host
options:
  db:
    description:
      - Database the module connects to for C(CREATE DATABASE), C(ALTER DATABASE) and the session checks (a maintenance
        database, never the one being replaced).
      - Overrides the database of O(url); C(postgres) when neither sets one.
    type: str
    required: false
  target_db:
    description:
      - The database to replace. Defaults to the database the backup was taken of.
      - Must be a plain name (letters, digits, C(_), C(.), C(-)), as the manifest's database must. A name holding C(=) or
        C(/) could be read by libpq as a connection string (sending the password elsewhere) or name files.
    type: str
  backup_id:
    description:
      - Id of the backup to restore, as returned by M(payments.deploy.pg_backup), from O(src_dir) or the S3 location.
      - Otherwise of the form C(<database>-<UTC time>-<6 hex digits>).
      - V(latest) picks the newest backup of O(target_db) there (by the C(created_at) of the manifests that authenticate
        with the key; the others are ignored).
      - Exactly one of O(backup_id) and O(manifest) is required.
    type: str
  manifest:
    description:
      - Path of a local manifest file (C(<backup id>.manifest.json)); the object is read from the same directory, unless
        O(s3_bucket) is set, in which case it is read from S3.
    type: path
  src_dir:
    description:
      - Local directory holding the backup. One of O(src_dir), O(s3_bucket) and O(manifest) is required.
    type: path
  encryption_key:
    description:
      - The key the backup was made with, as 64 hexadecimal characters. Falls back to the C(ENCRYPTION_KEY) environment
        variable. A different key fails naming both key ids, before anything is decrypted.
    type: str
  terminate_connections:
    description:
      - Terminate the sessions connected to O(target_db) before the swap. With V(false), the module fails (before
        restoring) when sessions are connected.
    type: bool
    default: true
  jobs:
    description:
      - Number of parallel C(pg_restore) jobs (C(--jobs)). With V(1) the archive reaches C(pg_restore) on its standard
        input; above V(1) it is decompressed into the temporary file first (see O(temp_dir)), since a parallel
        C(pg_restore) must seek in it, and O(verify_first) is implied.
    type: int
    default: 1
  verify_first:
    description:
      - With V(true), the whole backup is read, authenticated and decrypted into the temporary file (see O(temp_dir))
        before the server is touched; a damaged backup then fails without any database being created. The restore reads
        that file afterwards, so the backup is read twice.
      - With V(false), the backup is streamed. Each chunk is authenticated before it is handed to C(pg_restore), which
        restores into the new database while the rest is still being read. C(pg_restore) never receives a byte that
        failed authentication. A damaged or truncated backup is found when the stream reaches the damage; the new
        database is then dropped and O(target_db) is untouched, as with V(true). The swap only happens after the whole
        object authenticated, its sha256 matched the manifest and the row counts matched. No plaintext touches the disk.
      - V(false) restores about as fast as plain C(pg_restore) of a C(pg_dump -Fc) file (see the restore-speed benchmark
        in the documentation); V(true) adds the time of the first pass and of writing the file.
    type: bool
    default: false
  analyze:
    description:
      - Run C(ANALYZE) on every restored table (two sessions at once, largest tables first; the system catalogs keep the
        statistics copied from the template) before the swap, so that the planner has statistics from its first query.
    type: bool
    default: true
  verify_row_counts:
    description:
      - Compare the row count of every table of the restored database with the counts recorded in the manifest (taken in
        the dump's snapshot), and fail, dropping the restored database, on any difference.
    type: bool
    default: true
  temp_dir:
    description:
      - Directory for the verified, decrypted backup with O(verify_first) or O(jobs) above V(1) (plaintext, mode C(0600),
        named C(payments-restore-*), removed at the end); use an encrypted disk or a tmpfs. A streamed restore writes no
        file. It holds the decrypted zstd stream, about the size of the stored object (RV(sizes.stored_bytes)); with
        O(jobs) above 1 it holds the uncompressed dump (RV(sizes.dump_bytes)), since a parallel C(pg_restore) must seek in it.
      - The system temporary directory when omitted.
    type: path
seealso:
  - module: payments.deploy.pg_backup
  - name: pg_restore
    description: The client program that restores the archive.
    link: https://www.postgresql.org/docs/15/app-pgrestore.html
"""

EXAMPLES = r"""
- name: Restore the backup taken before the deploy, keeping the current database
  payments.deploy.pg_restore_backup:
    login_host: db.internal
    login_user: postgres
    login_password: "{{ vault_pg_admin_password }}"
    backup_id: "{{ journal.backup_id }}"
    target_db: payments
    encryption_key: "{{ vault_encryption_key }}"
    s3_bucket: payments-backups
    s3_prefix: production/postgres
  register: restore

- name: Reconcile Stripe events from the kept database
  ansible.builtin.debug:
    msg: "restored {{ restore.restored_database }} from {{ restore.backup_id }}; previous data kept in {{ restore.kept_database }}"

- name: Only check that the newest local backup is intact and decryptable
  payments.deploy.pg_restore_backup:
    login_host: /run/postgresql
    src_dir: /var/backups/postgres
    backup_id: latest
    target_db: payments
  check_mode: true
  environment:
    ENCRYPTION_KEY: "{{ vault_encryption_key }}"
"""

RETURN = r"""
backup_id:
  description: The backup restored.
  returned: success
  type: str
  sample: payments-20260101T020000Z-3f9a1c
restored_database:
  description: The database now holding the restored data (O(target_db)).
  returned: success
  type: str
  sample: payments
kept_database:
  description: The name the replaced database is kept under; V(null) when O(target_db) did not exist.
  returned: success
  type: str
  sample: payments_before_restore_20260101031500
commands:
  description: The programs run, as argument lists (in check mode, also those that would run). No password appears in them.
  returned: always
  type: list
  elements: list
  sample: [["/usr/lib/postgresql/15/bin/pg_restore", "--no-password", "--exit-on-error", "--dbname=payments_restore_20260101031500"]]
queries:
  description: The SQL statements run (per-table counts summarised in one line).
  returned: always
  type: list
  elements: str
timings:
  description:
    - Seconds per stage (connect, fetch_and_decrypt, create, pg_restore, analyze, verify, swap, total).
    - A streamed restore (O(verify_first=false)) has no fetch_and_decrypt stage. Fetching, authenticating and decrypting
      overlap with C(pg_restore) and are part of its time.
  returned: always
  type: dict
  sample: {"fetch_and_decrypt": 2.1, "pg_restore": 31.4, "swap": 0.2, "total": 35.0}
verification:
  description: What was checked before and after the restore (C(streamed) says whether the chunks went straight into C(pg_restore)).
  returned: success
  type: dict
  sample: {"sha256": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b", "chunks": 184,
           "key_id": "0f3a9c2b7d1e4a55", "archive_parsed": true, "row_counts_match": true, "streamed": true}
terminated_sessions:
  description: How many sessions of O(target_db) were terminated.
  returned: success and not check mode
  type: int
sizes:
  description: Bytes of the stored object and of the decrypted dump.
  returned: success
  type: dict
  contains:
    stored_bytes:
      description: Size of the stored (compressed, encrypted) object.
      type: int
    dump_bytes:
      description: Size of the decrypted dump, the room O(temp_dir) needs.
      type: int
  sample: {"stored_bytes": 192531967, "dump_bytes": 954275432}
connection:
  description: The connection settings used (never the password).
  returned: always
  type: dict
"""

import datetime
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils import _backup_store as store_lib
from ansible_collections.payments.deploy.plugins.module_utils import _crypto as crypto
from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg
from ansible_collections.payments.deploy.plugins.module_utils._backup_module import (
    MAX_IDENTIFIER,
    BackupRun,
    backup_argument_spec,
    require_libraries,
)

FAILURES = (pg.PostgresError, store_lib.StoreError, crypto.BackupIntegrityError, OSError, ValueError)
ANALYZE_SESSIONS = 2
# The tables ANALYZE gathers statistics for: user tables, materialized views and partitioned parents (whose ANALYZE
# covers their partitions), not the system catalogs; largest first, so that the sessions finish together.
RESTORED_TABLES = """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm', 'p') AND NOT c.relispartition AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY pg_total_relation_size(c.oid) DESC, 1, 2"""
UNTOUCHED = "no database was touched"
MAINTENANCE_DB = "postgres"


class Restore(BackupRun):
    """One run: restore the backup beside the target while authenticating it (or after, with verify_first), verify, swap
    names; fail closed at each step."""

    def __init__(self, module: AnsibleModule) -> None:
        super().__init__(module)
        # the database connected to (never the one restored): db, else the url's database, else postgres
        self.maintenance_db: str = self.conn.dbname or MAINTENANCE_DB
        self.key = self.validated_key()
        self.store = self._store()
        self.manifest: dict[str, t.Any] = {}
        self.target = ""
        self.admin: pg.Session | None = None
        self.created: str | None = None  # a database this run created and has not handed over yet: dropped on failure
        self.stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d%H%M%S")

    def before_failing(self, msg: str) -> str:
        """A database this run created is dropped first (on every failure path)."""
        if self.created is not None and self.admin is not None:
            msg = f"{msg}; {self.drop(self.admin, self.created)}"
            self.created = None
        return msg

    def failure_fields(self) -> dict[str, t.Any]:
        return {"backup_id": self.manifest.get("backup_id"), "connection": self.conn.describe()}

    def option_problems(self) -> list[str]:
        params = self.params
        problems = []
        if (params["backup_id"] is None) == (params["manifest"] is None):
            problems.append("set exactly one of backup_id and manifest")
        if params["backup_id"] is not None and not params["src_dir"] and not params["s3_bucket"]:
            problems.append("backup_id needs a source: src_dir or s3_bucket")
        if params["src_dir"] and params["s3_bucket"]:
            problems.append("set only one source: src_dir or s3_bucket")
        if params["backup_id"] == "latest" and not params["target_db"]:
            problems.append("backup_id=latest needs target_db (the database whose newest backup to restore)")
        if params["backup_id"] not in (None, "latest") and not store_lib.is_backup_id(params["backup_id"]):
            problems.append(f"backup_id {params['backup_id']!r} is not a backup id (<database>-<UTC time>-<6 hex digits>) nor 'latest'")
        if params["target_db"] is not None:
            problem = store_lib.plain_name_problem("target_db", params["target_db"])
            if problem:
                problems.append(problem + ": it would be read as a connection string, or name files")
        if params["jobs"] < 1:
            problems.append("jobs must be at least 1")
        if params["s3_part_size_mb"] < 5:
            problems.append("s3_part_size_mb must be at least 5")
        return problems

    def _store(self) -> store_lib.Store:
        if self.params["s3_bucket"]:
            return self.s3_store()
        return store_lib.LocalStore(self.params["src_dir"] or os.path.dirname(self.params["manifest"]))

    # --- the backup ------------------------------------------------------------------------------------------

    def load_manifest(self) -> dict[str, t.Any]:
        params = self.params
        if params["manifest"]:
            try:
                with open(params["manifest"], encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as exc:
                raise store_lib.StoreError(f"cannot read manifest {params['manifest']}: {exc}") from None
            where = params["manifest"]
        elif params["backup_id"] == "latest":
            listed = self.store.manifests(params["target_db"])
            # only an authenticated created_at may decide which backup is the newest
            found = [m for m in listed if crypto.manifest_authentic(self.key, m)]
            if not found:
                ignored = f" ({len(listed)} manifest(s) there fail authentication with this key and were ignored)" if listed else ""
                raise store_lib.StoreError(f"no authenticated backup of {params['target_db']} in {self.store.describe()}{ignored}")
            where = self.store.location(store_lib.manifest_name(found[0]["backup_id"]))
            text = json.dumps(found[0])
        else:
            name = store_lib.manifest_name(params["backup_id"])
            where = self.store.location(name)
            text = self.store.read_text(name)
        try:
            manifest = json.loads(text)
        except ValueError as exc:
            raise store_lib.StoreError(f"manifest {where} is not valid JSON: {exc}") from None
        problems = store_lib.manifest_problems(manifest)
        if problems:
            raise store_lib.StoreError(f"manifest {where} refused: {'; '.join(problems)}: not a pg_backup manifest")
        if params["backup_id"] not in (None, "latest") and manifest["backup_id"] != params["backup_id"]:
            raise store_lib.StoreError(f"manifest {where} refused: it describes backup {manifest['backup_id']}, not {params['backup_id']}")
        return manifest

    def authenticate(self) -> None:
        """Check the manifest's MAC before anything in it is used (the key id is compared first, for a clear message)."""
        manifest = self.manifest
        expected_key = manifest["encryption"].get("key_id")
        if expected_key and expected_key != crypto.key_id(self.key):
            raise crypto.BackupIntegrityError("wrong_key", f"wrong key: backup {manifest['backup_id']} was encrypted with the key whose "
                                                           f"id is {expected_key}, but the given key has id {crypto.key_id(self.key)}")
        if manifest.get("mac") is None:
            raise crypto.BackupIntegrityError(
                "unauthenticated", "its manifest carries no authentication code: it was written before manifests were "
                "authenticated, so its backup id, database, sha256 and row counts could have been swapped with another "
                "backup's undetectably; restoring it is refused (take a new backup)")
        if not crypto.manifest_authentic(self.key, manifest):
            raise crypto.BackupIntegrityError("tampered", "its manifest failed authentication: it was modified after the backup "
                                                          "was written")

    def decode(self, sink: t.Callable[[bytes], None] | None, compressed_sink: t.Callable[[bytes], None] | None = None) -> crypto.BackupReader:
        """Stream the stored object through sha256 + authenticated decryption + decompression into ``sink`` (the dump)
        or ``compressed_sink`` (the decrypted zstd stream, decompressed all the same to check it)."""
        manifest = self.manifest
        name = store_lib.object_name(manifest["backup_id"])  # never a path read from the manifest
        context = crypto.backup_context(manifest["backup_id"], manifest["database"], manifest["created_at"])
        reader = crypto.BackupReader(self.key, sink, compressed_sink, context=context)
        for block in self.store.read(name):
            reader.write(block)
        reader.close()
        digest = reader.sha256.hexdigest()
        if digest != manifest["sha256"]:
            raise crypto.BackupIntegrityError("tampered", f"sha256 of {self.store.location(name)} is {digest}, "
                                                          f"but the manifest records {manifest['sha256']}")
        return reader

    def verification(self, reader: crypto.BackupReader) -> dict[str, t.Any]:
        return {"sha256": reader.sha256.hexdigest(), "chunks": reader.decryptor.chunks, "key_id": reader.decryptor.key_id,
                "archive_parsed": False, "row_counts_match": None, "streamed": self.streamed()}

    def parallel(self) -> bool:
        return self.params["jobs"] > 1

    def streamed(self) -> bool:
        """Chunks go from the store through authentication straight into pg_restore: no first pass, no file."""
        return not self.parallel() and not self.params["verify_first"]

    def fetch_to_file(self) -> tuple[str, crypto.BackupReader]:
        """The verified, decrypted backup in a temporary file: still zstd-compressed (a fifth of the dump's size, streamed
        into pg_restore later), or the dump itself for a parallel pg_restore, which needs to seek in it."""
        suffix = ".dump" if self.parallel() else ".dump.zst"
        # a fixed prefix: nothing from the input may steer the plaintext out of temp_dir
        fd, path = tempfile.mkstemp(prefix="payments-restore-", suffix=suffix, dir=self.params["temp_dir"])
        try:
            with os.fdopen(fd, "wb") as handle:
                feeder = pg.Feeder(handle.write)  # writing overlaps with decrypting and decompressing the next piece
                try:
                    reader = self.decode(feeder) if self.parallel() else self.decode(None, compressed_sink=feeder)
                finally:
                    feeder.close_quietly()
                feeder.close()
                handle.flush()
        except BaseException:
            os.unlink(path)
            raise
        return path, reader

    def parse_only(self, pg_restore: str) -> crypto.BackupReader:
        """Check mode: the full decode, into ``pg_restore --file=/dev/null`` (a complete parse), nothing on disk."""
        argv = [pg_restore, "--file=/dev/null"]
        self.commands.append(argv)
        return self.stream_into(argv)[1]

    # --- the databases -------------------------------------------------------------------------------------------

    def names(self) -> tuple[str, str]:
        restored, kept = f"{self.target}_restore_{self.stamp}", f"{self.target}_before_restore_{self.stamp}"
        if len(kept.encode()) > MAX_IDENTIFIER:
            raise ValueError(f"target_db {self.target!r} is too long: {kept!r} exceeds PostgreSQL's {MAX_IDENTIFIER}-byte limit")
        return restored, kept

    def restore_argv(self, pg_restore: str, database: str) -> list[str]:
        """With one job the archive comes on stdin (streamed, or decompressed from the temporary file as pg_restore
        reads it); with more, pg_restore reads the temporary file, appended by run_pg_restore."""
        if self.parallel():
            return [pg_restore, "--no-password", "--exit-on-error", f"--jobs={self.params['jobs']}",
                    f"--dbname={self.conn.conninfo(database)}"]
        return [pg_restore, "--no-password", "--exit-on-error", f"--dbname={self.conn.conninfo(database)}"]

    def stream_into(self, argv: list[str]) -> tuple[str, crypto.BackupReader]:
        """Store -> sha256 -> authenticated decryption -> decompression -> pg_restore's stdin, in one pass (a restore, or
        the check-mode parse into /dev/null)."""
        child = pg.Child(argv, self.conn, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        feeder = pg.Feeder(child.feed)  # writing overlaps with reading and decrypting the next chunk
        try:
            reader = self.decode(feeder)
            feeder.close()
            child.close_stdin()
            return child.check(), reader
        except BaseException:
            child.kill()  # a damaged backup: pg_restore must not go on with what it has
            feeder.close_quietly()
            raise

    def run_pg_restore(self, argv: list[str], path: str) -> str:
        if self.parallel():
            argv.append(path)
            return pg.Child(argv, self.conn, stdout=subprocess.DEVNULL).check()
        child = pg.Child(argv, self.conn, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        feeder = pg.Feeder(child.feed)
        try:
            with open(path, "rb") as handle:
                crypto.decompress_into(iter(lambda: handle.read(store_lib.READ_SIZE), b""), feeder)
            feeder.close()
            child.close_stdin()
            return child.check()
        except BaseException:
            child.kill()
            feeder.close_quietly()
            raise

    def terminate(self, admin: pg.Session) -> int:
        """Terminate the sessions of the target (new ones are already refused); wait until they are gone."""
        terminated = int(admin.value("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE datname = %s AND pid <> pg_backend_pid()", (self.target,)))
        deadline = time.monotonic() + 30
        while pg.sessions_on(admin, self.target) and time.monotonic() < deadline:
            time.sleep(0.1)
        return terminated

    def swap(self, admin: pg.Session, restored: str, kept: str | None, allow_connections: bool) -> int:
        """Rename the target away and the restored database into its place, in one transaction."""
        target = pg.quote_ident(self.target)
        if kept is None:
            admin.execute(f"ALTER DATABASE {pg.quote_ident(restored)} RENAME TO {target}")
            return 0
        admin.execute(f"ALTER DATABASE {target} WITH ALLOW_CONNECTIONS false")
        terminated = 0
        try:
            if self.params["terminate_connections"]:
                terminated = self.terminate(admin)
            left = pg.sessions_on(admin, self.target)
            if left:
                raise pg.PostgresError(f"{left} session(s) are still connected to {self.target}")
            with admin.raw.transaction():
                admin.execute(f"ALTER DATABASE {target} RENAME TO {pg.quote_ident(kept)}")
                admin.execute(f"ALTER DATABASE {pg.quote_ident(restored)} RENAME TO {target}")
        except BaseException:
            admin.execute(f"ALTER DATABASE {target} WITH ALLOW_CONNECTIONS {str(allow_connections).lower()}")
            raise
        try:
            admin.execute(f"ALTER DATABASE {pg.quote_ident(kept)} WITH ALLOW_CONNECTIONS {str(allow_connections).lower()}")
        except pg.PostgresError as exc:
            self.module.warn(f"the swap is done, but {kept} still refuses connections: {exc}")
        return terminated

    def drop(self, admin: pg.Session, database: str) -> str:
        try:
            admin.execute(f"DROP DATABASE IF EXISTS {pg.quote_ident(database)} WITH (FORCE)")
        except pg.PostgresError as exc:
            return f"dropping {database}, which this run created, failed too ({exc}): drop it by hand"
        return f"{database}, which this run created, was dropped"

    # --- the run ------------------------------------------------------------------------------------------------

    def run(self) -> t.NoReturn:
        since = time.monotonic()
        try:
            self.manifest = self.load_manifest()
        except FAILURES as exc:
            self.fail(f"{exc}; {UNTOUCHED}")
        try:
            self.authenticate()
        except crypto.BackupIntegrityError as exc:
            self.fail(f"backup {self.manifest['backup_id']} refused: {exc}; {UNTOUCHED}", integrity_failure=exc.kind)
        try:
            self.target = self.params["target_db"] or self.manifest["database"]
            if self.target == self.maintenance_db:
                raise ValueError(f"db (the database the module connects to) must not be target_db {self.target}: use a maintenance database")
            restored, kept = self.names()
            admin = self.admin = pg.Session(self.conn, self.maintenance_db, self.queries)
            version_num, version = pg.server_version(admin)
            pg_restore = pg.find_client("pg_restore", self.params["pg_bin_dir"], pg.major_of(version_num))
            archive_major = int(str(self.manifest.get("pg_dump_version") or "0").split(".", maxsplit=1)[0] or 0)
            pg.require_client(pg_restore, max(archive_major, pg.major_of(version_num)),
                              f"the archive (pg_dump {self.manifest.get('pg_dump_version')}) or the server ({version})")
            target_info = pg.database_info(admin, self.target)
            for name in (restored, kept):
                if pg.database_info(admin, name) is not None:
                    raise pg.PostgresError(f"database {name} already exists")
            if target_info is None:
                kept = None
            elif not self.params["terminate_connections"] and pg.sessions_on(admin, self.target):
                raise pg.PostgresError(f"{pg.sessions_on(admin, self.target)} session(s) are connected to {self.target} and "
                                       "terminate_connections is false")
        except FAILURES as exc:
            self.fail(f"{exc}; {UNTOUCHED}")
        self.stage("connect", since)

        if self.module.check_mode:
            self.check_mode_exit(admin, pg_restore, restored, kept, target_info)

        try:
            self.apply(admin, pg_restore, restored, kept, target_info)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # unexpected: still nothing this run created may be left behind (fail drops it)
            self.fail(f"unexpected error ({type(exc).__name__}): {exc}")
        except BaseException:
            if self.created is not None:
                self.drop(admin, self.created)
            raise

    def apply(self, admin: pg.Session, pg_restore: str, restored: str, kept: str | None, target_info: dict[str, t.Any] | None) -> t.NoReturn:
        if self.streamed():
            reader, verification = self.restore(admin, pg_restore, restored, target_info, self.stream_into)
        else:
            since = time.monotonic()
            try:
                path, spooled = self.fetch_to_file()
            except FAILURES as exc:
                self.fail(f"backup {self.manifest['backup_id']} refused: {exc}; {UNTOUCHED}",
                          integrity_failure=getattr(exc, "kind", None))
            self.stage("fetch_and_decrypt", since)
            try:
                reader, verification = self.restore(admin, pg_restore, restored, target_info,
                                                    lambda argv: (self.run_pg_restore(argv, path), spooled))
            finally:
                os.unlink(path)

        since = time.monotonic()
        allow = bool(target_info["allow_connections"]) if target_info else True
        try:
            terminated = self.swap(admin, restored, kept, allow)
        except FAILURES as exc:
            self.fail(f"swapping {restored} in for {self.target} failed: {exc}; {self.target} is unchanged and still serves")
        self.created = None  # it is the target now
        self.stage("swap", since)
        admin.close()
        self.timings["total"] = self.elapsed()
        result = self.result(restored, kept, verification, reader)
        result.update(changed=True, terminated_sessions=terminated)
        self.module.exit_json(**result)

    def restore(self, admin: pg.Session, pg_restore: str, restored: str, target_info: dict[str, t.Any] | None,
                load: t.Callable[[list[str]], tuple[str, crypto.BackupReader]]) -> tuple[crypto.BackupReader, dict[str, t.Any]]:
        """Create ``restored``, ``load`` it with pg_restore (returns its warnings and the reader that checked the backup),
        analyze, verify row counts; it is dropped again on any failure."""
        since = time.monotonic()
        try:
            like = target_info or pg.database_info(admin, "template0")
            if like is None:
                raise pg.PostgresError("database template0 not found")
            admin.execute(pg.create_database_sql(restored, like, owner=target_info["owner"] if target_info else None))
            self.created = restored
            if target_info:
                for statement in pg.copy_database_settings_sql(admin, self.target, restored):
                    admin.execute(statement)
        except FAILURES as exc:
            self.fail(f"creating {restored} failed: {exc}; {self.target} is untouched")
        self.stage("create", since)
        try:
            since = time.monotonic()
            argv = self.restore_argv(pg_restore, restored)
            self.commands.append(argv)
            warnings, reader = load(argv)
            if warnings:
                self.module.warn(f"pg_restore: {warnings}")
            verification = self.verification(reader)
            verification["archive_parsed"] = True
            self.stage("pg_restore", since)
            self.analyze_and_count(restored, verification)
        except (crypto.BackupIntegrityError, store_lib.StoreError) as exc:
            # found while streaming: pg_restore got only the chunks before the damage, into the new database
            note = self.drop(admin, restored)
            self.created = None
            self.fail(f"backup {self.manifest['backup_id']} refused: {exc}; {note}; {self.target} is untouched",
                      integrity_failure=getattr(exc, "kind", None))
        except FAILURES as exc:
            note = self.drop(admin, restored)
            self.created = None
            self.fail(f"restoring into {restored} failed: {exc}; {note}; {self.target} is untouched")
        return reader, verification

    def analyze_tables(self, restored: str) -> None:
        """ANALYZE the restored tables, largest first, in ANALYZE_SESSIONS sessions at once: pg_restore is done, so the
        server's cores are free. The system catalogs keep the statistics they were copied with from the template (a bare
        ANALYZE would redo them too, about a third of its time on a payments database)."""
        session = pg.Session(self.conn, restored, self.queries)
        try:
            tables = [f"{pg.quote_ident(schema)}.{pg.quote_ident(name)}" for schema, name in session.execute(RESTORED_TABLES).fetchall()]
        finally:
            session.close()
        self.queries.append(f"ANALYZE each of the {len(tables)} tables above, {ANALYZE_SESSIONS} sessions at once")
        pending: queue.Queue[str] = queue.Queue()
        for table in tables:
            pending.put(table)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                worker = pg.Session(self.conn, restored, self.queries)
                try:
                    while not errors:
                        try:
                            table = pending.get_nowait()
                        except queue.Empty:
                            return
                        worker.execute(f"ANALYZE {table}", record=False)
                finally:
                    worker.close()
            except BaseException as exc:  # pylint: disable=broad-exception-caught
                errors.append(exc)

        workers = [threading.Thread(target=work, name=f"analyze-{n}", daemon=True) for n in range(min(ANALYZE_SESSIONS, len(tables)))]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        if errors:
            raise errors[0]

    def analyze_and_count(self, restored: str, verification: dict[str, t.Any]) -> None:
        """ANALYZE (in sessions of their own) while the rows of every table are counted and compared with the manifest."""
        errors: list[BaseException] = []

        def analyze() -> None:
            since = time.monotonic()
            try:
                self.analyze_tables(restored)
            except BaseException as exc:  # pylint: disable=broad-exception-caught
                errors.append(exc)
            self.stage("analyze", since)

        analyzer = threading.Thread(target=analyze, name="analyze", daemon=True)
        if self.params["analyze"]:
            analyzer.start()
        try:
            since = time.monotonic()
            expected = self.manifest.get("row_counts")
            if self.params["verify_row_counts"] and expected is not None:
                session = pg.Session(self.conn, restored, self.queries)
                try:
                    problems = pg.compare_row_counts(expected, pg.table_row_counts(session))
                finally:
                    session.close()
                if problems:
                    raise pg.PostgresError("the restored data differs from the backup: " + "; ".join(problems))
                verification["row_counts_match"] = True
            elif self.params["verify_row_counts"]:
                self.module.warn(f"manifest of {self.manifest['backup_id']} has no row counts: rows not compared")
            self.stage("verify", since)
        finally:
            if analyzer.is_alive():
                analyzer.join()
        if errors:
            raise errors[0]

    def result(self, restored: str, kept: str | None, verification: dict[str, t.Any], reader: crypto.BackupReader) -> dict[str, t.Any]:
        return {"backup_id": self.manifest["backup_id"], "restored_database": self.target, "kept_database": kept,
                "restored_via": restored, "commands": self.commands, "queries": self.queries, "timings": self.timings,
                "verification": verification, "sizes": {"stored_bytes": reader.stored_bytes, "dump_bytes": reader.dump_bytes},
                "connection": self.conn.describe(), **({"diff": self.diff(kept)} if self.module._diff else {})}

    def diff(self, kept: str | None) -> dict[str, str]:
        before = f"{self.target}: current data\n"
        after = f"{self.target}: restored from {self.manifest['backup_id']}\n"
        if kept is None:
            before = ""
        else:
            after += f"{kept}: the replaced data, kept\n"
        return {"before": before, "after": after, "before_header": "databases", "after_header": "databases"}

    def check_mode_exit(self, admin: pg.Session, pg_restore: str, restored: str, kept: str | None,
                        target_info: dict[str, t.Any] | None) -> t.NoReturn:
        since = time.monotonic()
        try:
            reader = self.parse_only(pg_restore)
        except FAILURES as exc:
            self.fail(f"backup {self.manifest['backup_id']} refused: {exc}; {UNTOUCHED}", integrity_failure=getattr(exc, "kind", None))
        self.stage("fetch_and_decrypt", since)
        admin.close()
        verification = self.verification(reader)
        verification["archive_parsed"] = True
        self.commands.append(self.restore_argv(pg_restore, restored) + ([] if not self.parallel() else ["<decrypted temporary file>"]))
        self.timings["total"] = self.elapsed()
        result = self.result(restored, kept, verification, reader)
        result.update(changed=True, owner=target_info["owner"] if target_info else None)
        self.module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(argument_spec=backup_argument_spec(
        target_db={"type": "str"},
        backup_id={"type": "str"},
        manifest={"type": "path"},
        src_dir={"type": "path"},
        terminate_connections={"type": "bool", "default": True},
        jobs={"type": "int", "default": 1},
        verify_first={"type": "bool", "default": False},
        analyze={"type": "bool", "default": True},
        verify_row_counts={"type": "bool", "default": True},
        temp_dir={"type": "path"},
    ), supports_check_mode=True)
    require_libraries(module)
    Restore(module).run()


if __name__ == "__main__":
    main()

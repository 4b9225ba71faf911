#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_backup
short_description: Encrypted, compressed, checksummed and verified backup of a PostgreSQL database, to a directory and/or S3
version_added: 0.1.0
description:
  - Dumps one database with C(pg_dump --format=custom --compress=0) and streams the dump, without a shell and without a
    plaintext file, through zstandard compression and chunked AES-256-GCM authenticated encryption into the destinations
    (O(dest_dir), an S3 bucket, or both). The format is described in C(docs/backup-and-restore.md).
  - The dump, the schema fingerprint, the migration head and the per-table row counts all come from one snapshot, which the
    module exports from a C(REPEATABLE READ) transaction and hands to C(pg_dump --snapshot).
  - Every stage is checked (exit status and stderr of each program, every write). An object appears under its final name
    only when it is complete; on any failure the temporary file is removed or the S3 multipart upload aborted, so nothing
    that looks like a backup is left behind.
  - With O(verify=true) the stored object is read back, its sha256 compared, and it is decrypted, decompressed and fully
    parsed by C(pg_restore); with O(verify_restore=true) it is restored into a scratch database whose per-table row counts
    must equal those counted in the snapshot. An object that fails verification is deleted.
  - A manifest C(<backup id>.manifest.json) is written beside the object last, with the backup id, database, versions,
    sizes, sha256, timings, migration head, schema fingerprint, row counts, encryption and compression parameters (never the key),
    and an HMAC-SHA256 over all of it under a key derived from the encryption key. The object's header binds it to the
    backup id, database and creation time (authenticated in every chunk), so one backup cannot be passed off as another.
  - With several destinations, a manifest already written is deleted again when writing it to a later one fails.
  - O(keep) deletes the oldest backups of the database (manifest and object), never the one just made. It deletes only
    C(<id>.manifest.json) and C(<id>.dump.zst.enc) of backup ids of this database, never a path named inside a manifest.
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
    details: Connects, checks the client versions and the destinations, and reports the commands it would run and the backups
      O(keep) would delete; dumps, writes and deletes nothing.
  diff_mode:
    support: full
    details: The backups of the database in each destination before and after.
  platform:
    platforms: posix
requirements:
  - zstandard on the target host
  - cryptography on the target host
options:
  db:
    description:
      - Name of the database to back up; overrides the database of O(url). One of O(db) and O(url) (with a database)
        is required.
      - It is part of the backup id and the file names, so it must be a plain name (letters, digits, C(_), C(.), C(-)) of
        at most 63 bytes.
  encryption_key:
    description:
      - The 32-byte key, as 64 hexadecimal characters, that encrypts the backup. Falls back to the C(ENCRYPTION_KEY)
        environment variable of the module.
      - Missing or malformed, the module fails before anything runs; the message names the problem, never the value.
      - Only its key id (the first 8 bytes of its sha256) is recorded, so that a restore with a wrong key is named as such.
    type: str
  dest_dir:
    description:
      - Local directory (on the target host) to store the backup in; created with mode C(0700) when missing.
      - At least one of O(dest_dir) and O(s3_bucket) is required. With both, the backup is streamed to both at once.
    type: path
  compression_level:
    description:
      - zstandard compression level, 1 (fastest) to 19.
    type: int
    default: 3
  keep:
    description:
      - Keep the newest O(keep) backups of this database in each destination (by the C(created_at) of their manifests,
        the new one included) and delete the older ones, manifest first. Nothing is deleted when omitted.
      - Manifests that do not authenticate with the key (written before manifests were authenticated, with another key,
        or planted) count as older than every authenticated one, so a forged date never pushes a real backup out.
        Manifests that are malformed, or whose id is not the one in their file name, are ignored.
    type: int
  verify:
    description:
      - Read every stored copy back and compare its sha256; decrypt, decompress and parse one of them completely with
        C(pg_restore --file=/dev/null). A truncated or damaged archive fails this (unlike C(pg_restore --list)).
    type: bool
    default: true
  verify_restore:
    description:
      - Also restore the backup into a scratch database C(<db>_verify_<random>) and compare its per-table row counts with
        the counts taken in the dump's snapshot; the scratch database is dropped afterwards. Needs C(CREATEDB).
      - Replaces the C(pg_restore --file=/dev/null) parse (the restore parses the archive too). Needs O(verify=true).
    type: bool
    default: false
  migration_head:
    description:
      - The migration head to record in the manifest (for example the last change applied by M(payments.deploy.db_migrate)).
    type: str
  migration_registry_table:
    description:
      - Read the migration head from this registry table (C(schema.table)) in the dump's snapshot instead, as the C(name) of
        its most recently applied row (C(ORDER BY applied_at DESC, name DESC)), which is how M(payments.deploy.db_migrate) keeps it.
      - A missing table records no head and warns. Mutually exclusive with O(migration_head).
    type: str
  lock_wait_timeout:
    description:
      - Passed as C(pg_dump --lock-wait-timeout) (for example V(30s)), so that the dump fails instead of waiting behind a lock
        held by a migration.
    type: str
seealso:
  - module: payments.deploy.pg_restore_backup
  - name: pg_dump
    description: The client program that makes the dump.
    link: https://www.postgresql.org/docs/15/app-pgdump.html
"""

EXAMPLES = r"""
- name: Back up the payment database to S3 before migrating, verified by a restore
  payments.deploy.pg_backup:
    login_host: db.internal
    login_user: backup
    login_password: "{{ vault_pg_backup_password }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/certs/db-ca.pem
    db: payments
    encryption_key: "{{ vault_encryption_key }}"
    s3_bucket: payments-backups
    s3_prefix: production/postgres
    s3_region: eu-west-1
    migration_registry_table: payments_deploy.changes
    verify_restore: true
    keep: 14
  register: backup

- name: Record the backup id in the deploy journal
  ansible.builtin.debug:
    msg: "backup {{ backup.backup_id }} sha256 {{ backup.sha256 }} at {{ backup.locations | join(', ') }}"

- name: Local backup (key from the ENCRYPTION_KEY environment variable)
  payments.deploy.pg_backup:
    login_host: /run/postgresql
    db: payments
    dest_dir: /var/backups/postgres
    keep: 7
  environment:
    ENCRYPTION_KEY: "{{ vault_encryption_key }}"
"""

RETURN = r"""
backup_id:
  description: Id of the backup, C(<db>-<UTC time>-<random>); the object is C(<id>.dump.zst.enc), the manifest C(<id>.manifest.json).
  returned: success
  type: str
  sample: payments-20260101T020000Z-3f9a1c
locations:
  description: Where the backup object was stored (in check mode, would be).
  returned: success
  type: list
  elements: str
  sample: ["/var/backups/postgres/payments-20260101T020000Z-3f9a1c.dump.zst.enc",
           "s3://payments-backups/production/postgres/payments-20260101T020000Z-3f9a1c.dump.zst.enc"]
manifest_locations:
  description: Where the manifest was stored.
  returned: success
  type: list
  elements: str
  sample: ["/var/backups/postgres/payments-20260101T020000Z-3f9a1c.manifest.json"]
sha256:
  description: sha256 of the stored object, computed while streaming and checked on read-back.
  returned: success and not check mode
  type: str
  sample: 6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b
manifest:
  description: The manifest written beside the object (see C(docs/backup-and-restore.md) for every field).
  returned: success and not check mode
  type: dict
  sample: {"backup_id": "payments-20260101T020000Z-3f9a1c", "database": "payments", "server_version": "15.18",
           "schema_fingerprint": "sha256:0c1f...", "migration_head": "0004_refunds", "row_counts": {"public.payments": 1200}}
commands:
  description:
    - The programs run, in order, as argument lists (in check mode, that would run). No password ever appears in them.
    - Empty when the module failed before running anything.
  returned: always
  type: list
  elements: list
  sample: [["/usr/lib/postgresql/15/bin/pg_dump", "--schema-only", "--format=plain", "--no-password",
            "--snapshot=00000003-00000002-1", "--dbname=payments"]]
queries:
  description: The SQL statements run through the module's own connections (per-table counts summarised in one line).
  returned: always
  type: list
  elements: str
timings:
  description:
    - Seconds per stage (connect, snapshot, schema_dump, dump, row_counts, store, verify, verify_restore, manifest,
      retention, total); dump covers pg_dump, compression, encryption and writing, which run concurrently, and
      C(compress_cpu), C(encrypt_cpu), C(write) break it down.
  returned: always
  type: dict
  sample: {"dump": 6.2, "verify": 1.9, "total": 9.1}
sizes:
  description: Bytes of the dump (C(dump_bytes)), after compression (C(compressed_bytes)) and as stored (C(stored_bytes)).
  returned: success and not check mode
  type: dict
  sample: {"dump_bytes": 954275432, "compressed_bytes": 192531609, "stored_bytes": 192531967}
verified:
  description: Whether the stored backup was verified (O(verify)) and passed.
  returned: success
  type: bool
verification:
  description: What verification checked.
  returned: success and not check mode
  type: dict
  sample: {"sha256_checked": ["/var/backups/postgres/payments-20260101T020000Z-3f9a1c.dump.zst.enc"], "chunks": 184,
           "archive_parsed": true, "restored_into": null, "row_counts_match": null}
deleted:
  description: Backups removed by O(keep) (in check mode, that would be), oldest last.
  returned: success
  type: list
  elements: dict
  sample: [{"backup_id": "payments-20251201T020000Z-aa01bc", "created_at": "2025-12-01T02:00:00.120000Z",
            "locations": ["/var/backups/postgres/payments-20251201T020000Z-aa01bc.manifest.json",
                          "/var/backups/postgres/payments-20251201T020000Z-aa01bc.dump.zst.enc"]}]
connection:
  description: The connection settings used (never the password).
  returned: always
  type: dict
  sample: {"host": "db.internal", "port": 5432, "user": "backup", "ssl_mode": "verify-full", "ca_cert": "/etc/ssl/certs/db-ca.pem"}
"""

import datetime
import hashlib
import json
import re
import secrets
import subprocess
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
from ansible_collections.payments.deploy.plugins.module_utils._backup_pump import OutputPump

PLAIN_NAME = store_lib.PLAIN_NAME
QUALIFIED_NAME = re.compile(r"^(?:([A-Za-z_][A-Za-z0-9_$]*)\.)?([A-Za-z_][A-Za-z0-9_$]*)\Z")
FAILURES = (pg.PostgresError, store_lib.StoreError, crypto.BackupIntegrityError, OSError)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Dumped(t.NamedTuple):
    """What the dump stage produced: the stream's counters and digests, and what was read in its snapshot."""

    writer: crypto.BackupWriter
    counts: dict[str, int]
    head: str | None
    fingerprint: str
    verification: dict[str, t.Any]


class Backup(BackupRun):
    """One run of the module; every failure after the first write cleans up what it wrote."""

    def __init__(self, module: AnsibleModule) -> None:
        super().__init__(module)
        self.db: str = self.conn.dbname or ""
        self.key = self.validated_key()
        self.stores = self._stores()
        self.backup_id = ""
        self.context: bytes | None = None

    def failure_fields(self) -> dict[str, t.Any]:
        return {"backup_id": self.backup_id or None}

    # --- input ------------------------------------------------------------------------------------------

    def option_problems(self) -> list[str]:
        params = self.params
        problems = []
        if not params["dest_dir"] and not params["s3_bucket"]:
            problems.append("no destination: set dest_dir and/or s3_bucket")
        if not self.db:
            problems.append("no database to back up: set db, or url with a database name")
        elif not PLAIN_NAME.match(self.db):
            problems.append(f"db {self.db!r} cannot name backup files: use letters, digits, '_', '.' and '-'")
        elif len(self.db.encode()) > MAX_IDENTIFIER:
            problems.append(f"db {self.db!r} is longer than PostgreSQL's {MAX_IDENTIFIER}-byte limit")
        elif params["verify_restore"] and len(self.db) + len("_verify_") + 8 > MAX_IDENTIFIER:
            problems.append(f"db {self.db!r} is too long for the scratch database name of verify_restore")
        if params["keep"] is not None and params["keep"] < 1:
            problems.append("keep must be at least 1 (the new backup is always kept)")
        if not 1 <= params["compression_level"] <= 19:
            problems.append("compression_level must be between 1 and 19")
        if params["verify_restore"] and not params["verify"]:
            problems.append("verify_restore needs verify=true")
        if params["s3_part_size_mb"] < 5:
            problems.append("s3_part_size_mb must be at least 5 (the S3 minimum part size)")
        table = params["migration_registry_table"]
        if table is not None and not QUALIFIED_NAME.match(table):
            problems.append(f"migration_registry_table {table!r} must be 'table' or 'schema.table' (plain identifiers)")
        return problems

    def _stores(self) -> list[store_lib.Store]:
        stores: list[store_lib.Store] = []
        if self.params["dest_dir"]:
            stores.append(store_lib.LocalStore(self.params["dest_dir"]))
        if self.params["s3_bucket"]:
            stores.append(self.s3_store())
        return stores

    # --- stages -------------------------------------------------------------------------------------------

    def prepare(self) -> dict[str, t.Any]:
        """Server version, client programs and destinations; read-only."""
        since = time.monotonic()
        admin = pg.Session(self.conn, self.db, self.queries)
        try:
            version_num, version = pg.server_version(admin)
            source = pg.database_info(admin, self.db) if self.params["verify_restore"] else None
        finally:
            admin.close()
        major = pg.major_of(version_num)
        pg_dump = pg.find_client("pg_dump", self.params["pg_bin_dir"], major)
        pg_restore = pg.find_client("pg_restore", self.params["pg_bin_dir"], major)
        dump_version = pg.require_client(pg_dump, major, f"the server ({version})")
        if self.params["verify"]:
            pg.require_client(pg_restore, major, f"the server ({version})")
        self.stage("connect", since)
        since = time.monotonic()
        for store in self.stores:
            store.check(create=not self.module.check_mode)
        self.stage("destinations", since)
        return {"server_version_num": version_num, "server_version": version, "pg_dump": pg_dump, "pg_restore": pg_restore,
                "pg_dump_version": dump_version, "source": source}

    def dump_argv(self, pg_dump: str, snapshot: str, schema_only: bool) -> list[str]:
        if schema_only:
            return [pg_dump, "--schema-only", "--format=plain", "--no-password", f"--snapshot={snapshot}",
                    f"--dbname={self.conn.conninfo(self.db)}"]
        argv = [pg_dump, "--format=custom", "--compress=0", "--no-password", f"--snapshot={snapshot}", f"--dbname={self.conn.conninfo(self.db)}"]
        if self.params["lock_wait_timeout"]:
            argv.insert(-1, f"--lock-wait-timeout={self.params['lock_wait_timeout']}")
        return argv

    def verify_argv(self, pg_restore: str, scratch: str | None) -> list[str]:
        if scratch is None:
            return [pg_restore, "--file=/dev/null"]
        return [pg_restore, "--no-password", "--exit-on-error", "--no-owner", "--no-privileges", f"--dbname={self.conn.conninfo(scratch)}"]

    def migration_head(self, snap: pg.Session) -> str | None:
        if self.params["migration_head"] is not None:
            return self.params["migration_head"]
        table = self.params["migration_registry_table"]
        if table is None:
            return None
        match = QUALIFIED_NAME.match(table)
        if match is None:  # checked in _validate
            raise ValueError(f"migration_registry_table {table!r} is not a table name")
        schema, name = match.group(1) or "public", match.group(2)
        if snap.value("SELECT to_regclass(%s) IS NOT NULL", (f"{pg.quote_ident(schema)}.{pg.quote_ident(name)}",)) is not True:
            self.module.warn(f"migration_registry_table {table} does not exist in {self.db}: the manifest records no migration head")
            return None
        return snap.value(f"SELECT name FROM {pg.quote_ident(schema)}.{pg.quote_ident(name)} ORDER BY applied_at DESC, name DESC LIMIT 1")

    def open_snapshot(self) -> tuple[pg.Session, str]:
        snap = pg.Session(self.conn, self.db, self.queries, autocommit=False)
        snap.raw.isolation_level = pg.psycopg.IsolationLevel.REPEATABLE_READ
        snap.raw.read_only = True
        return snap, str(snap.value("SELECT pg_export_snapshot()"))

    def stream_dump(self, argv: list[str], uploads: list[store_lib.Upload], snap: pg.Session) -> tuple[crypto.BackupWriter, dict[str, int]]:
        """pg_dump -> (reader thread) -> zstd -> AES-GCM -> sha256 -> every upload; row counts concurrently in the snapshot."""

        def sink(data: bytes) -> None:
            for upload in uploads:
                upload.write(data)

        writer = crypto.BackupWriter(self.key, sink, level=self.params["compression_level"], context=self.context)
        counts: dict[str, int] = {}
        errors: list[BaseException] = []

        def count() -> None:
            since = time.monotonic()
            try:
                counts.update(pg.table_row_counts(snap))
            except BaseException as exc:  # pylint: disable=broad-exception-caught
                errors.append(exc)
            self.stage("row_counts", since)

        self.commands.append(argv)
        child = pg.Child(argv, self.conn)
        pump = OutputPump(child, errors)
        counter = threading.Thread(target=count, name="row-counts", daemon=True)
        counter.start()
        pump.start()
        try:
            for block in pump.blocks():
                writer.write(block)
            warnings = child.check()
            if warnings:
                self.module.warn(f"pg_dump: {warnings}")
            writer.close()
        except BaseException:
            pump.stop()
            child.kill()
            snap.cancel()  # stop counting rows: the backup has failed
            raise
        finally:
            pump.close()
            counter.join()
        if errors:
            raise errors[0]
        return writer, counts

    def verify(self, info: dict[str, t.Any], writer: crypto.BackupWriter, counts: dict[str, int]) -> dict[str, t.Any]:
        """Read every stored copy back: sha256 of each; one decrypted, decompressed and parsed (or restored) in full."""
        name = store_lib.object_name(self.backup_id)
        expected = writer.sha256.hexdigest()
        report: dict[str, t.Any] = {"sha256_checked": [], "chunks": writer.encryptor.chunks, "archive_parsed": False,
                                    "restored_into": None, "row_counts_match": None}
        since = time.monotonic()
        for position, store in enumerate(self.stores):
            if position == 0:
                reader = self.decode_into_pg_restore(store, name, info, report, counts)
                digest, size = reader.sha256.hexdigest(), reader.stored_bytes
                if reader.dump_bytes != writer.dump_bytes:
                    raise crypto.BackupIntegrityError("tampered", f"{store.location(name)} decodes to {reader.dump_bytes} dump bytes, "
                                                                  f"not the {writer.dump_bytes} that were dumped")
            else:
                digest, size = self.hash_stored(store, name)
            if digest != expected or size != writer.stored_bytes:
                raise crypto.BackupIntegrityError("tampered", f"read back {store.location(name)}: sha256 {digest} ({size} bytes), "
                                                              f"but {expected} ({writer.stored_bytes} bytes) was written")
            report["sha256_checked"].append(store.location(name))
        self.stage("verify", since)
        return report

    @staticmethod
    def hash_stored(store: store_lib.Store, name: str) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        for block in store.read(name):
            digest.update(block)
            size += len(block)
        return digest.hexdigest(), size

    def decode_into_pg_restore(self, store: store_lib.Store, name: str, info: dict[str, t.Any], report: dict[str, t.Any],
                               counts: dict[str, int]) -> crypto.BackupReader:
        scratch = f"{self.db}_verify_{secrets.token_hex(4)}" if self.params["verify_restore"] else None
        admin = None
        if scratch is not None:
            admin = pg.Session(self.conn, self.db, self.queries)
            admin.execute(pg.create_database_sql(scratch, info["source"], owner=None))
            report["restored_into"] = scratch
        try:
            argv = self.verify_argv(info["pg_restore"], scratch)
            self.commands.append(argv)
            child = pg.Child(argv, self.conn, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            feeder = pg.Feeder(child.feed)
            reader = crypto.BackupReader(self.key, feeder, context=self.context)
            try:
                for block in store.read(name):
                    reader.write(block)
                reader.close()
                feeder.close()
                child.close_stdin()
                child.check()
            except BaseException:
                child.kill()
                feeder.close_quietly()
                raise
            report["archive_parsed"] = True
            if scratch is not None:
                restored = pg.Session(self.conn, scratch, self.queries)
                try:
                    problems = pg.compare_row_counts(counts, pg.table_row_counts(restored))
                finally:
                    restored.close()
                if problems:
                    raise crypto.BackupIntegrityError("tampered", f"the restore into {scratch} differs from the snapshot: "
                                                                  + "; ".join(problems))
                report["row_counts_match"] = True
        finally:
            if admin is not None and scratch is not None:
                try:
                    admin.execute(f"DROP DATABASE IF EXISTS {pg.quote_ident(scratch)} WITH (FORCE)")
                except pg.PostgresError as exc:
                    self.module.warn(f"could not drop the scratch database {scratch}: {exc}")
                admin.close()
        return reader

    # --- retention ----------------------------------------------------------------------------------------

    def expired(self) -> list[tuple[store_lib.Store, dict[str, t.Any]]]:
        """Manifests beyond the newest ``keep`` of this database (the new backup counted first, never listed). Only
        manifests whose id is one of this database's and matches their file name are listed (see store_lib.manifests).
        Their ``created_at`` orders only the manifests authenticated with this key: the others (written before manifests
        were authenticated, with another key, or planted) count as older than all of them, so a forged date cannot push a
        real backup out."""
        keep = self.params["keep"]
        if keep is None:
            return []
        doomed = []
        for store in self.stores:
            others = [m for m in store.manifests(self.db) if m["backup_id"] != self.backup_id]
            others.sort(key=lambda m: crypto.manifest_authentic(self.key, m), reverse=True)  # stable: newest first within each
            doomed.extend((store, manifest) for manifest in others[keep - 1:])
        return doomed

    def apply_retention(self) -> list[dict[str, t.Any]]:
        since = time.monotonic()
        deleted = []
        for store, manifest in self.expired():
            backup_id = manifest["backup_id"]
            # the names derive from the validated id, never from a path in the manifest
            names = [store_lib.manifest_name(backup_id), store_lib.object_name(backup_id)]
            for name in names:  # manifest first: an interrupted deletion never leaves a manifest without its object
                store.delete(name)
            deleted.append({"backup_id": backup_id, "created_at": manifest.get("created_at"),
                            "locations": [store.location(name) for name in names]})
        self.stage("retention", since)
        return deleted

    def listing(self) -> dict[str, list[str]]:
        return {store.describe(): [m["backup_id"] for m in store.manifests(self.db)] for store in self.stores}

    # --- the run ------------------------------------------------------------------------------------------

    def run(self) -> t.NoReturn:
        try:
            info = self.prepare()
        except FAILURES as exc:
            self.fail(str(exc))
        created = utc_now()
        self.backup_id = f"{self.db}-{created:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        # binds the object to this backup: authenticated in every chunk, and named by the (authenticated) manifest
        self.context = crypto.backup_context(self.backup_id, self.db, iso(created))
        name = store_lib.object_name(self.backup_id)
        locations = [store.location(name) for store in self.stores]
        manifest_locations = [store.location(store_lib.manifest_name(self.backup_id)) for store in self.stores]
        try:
            before = self.listing() if self.module._diff else {}
        except FAILURES as exc:
            self.fail(str(exc))
        if self.module.check_mode:
            self.check_mode_exit(info, locations, manifest_locations, before)
        dumped = self.dump_store_and_verify(info)
        manifest = self.manifest(info, created, dumped)
        self.write_manifest(manifest, locations)
        try:
            deleted = self.apply_retention()
            after = self.listing() if self.module._diff else {}
        except FAILURES as exc:
            self.fail(f"backup {self.backup_id} is complete and verified, but retention failed: {exc}", locations=locations)
        self.timings["total"] = self.elapsed()
        result = self.common_result(locations, manifest_locations, deleted)
        result.update(sha256=manifest["sha256"], manifest=manifest, sizes=manifest["sizes"], verified=bool(self.params["verify"]),
                      verification=dumped.verification, migration_head=dumped.head, schema_fingerprint=dumped.fingerprint)
        if self.module._diff:
            result["diff"] = self.diff(before, after)
        self.module.exit_json(**result)

    def dump_store_and_verify(self, info: dict[str, t.Any]) -> Dumped:
        """Snapshot, schema fingerprint, the dump streamed to every destination, commit, verification; on any failure
        nothing is kept (uploads aborted, stored objects deleted) and the module fails."""
        uploads: list[store_lib.Upload] = []
        committed: list[store_lib.Upload] = []
        snap = None
        try:
            since = time.monotonic()
            snap, snapshot = self.open_snapshot()
            head = self.migration_head(snap)
            self.stage("snapshot", since)

            since = time.monotonic()
            schema_argv = self.dump_argv(info["pg_dump"], snapshot, schema_only=True)
            self.commands.append(schema_argv)
            fingerprint = pg.schema_fingerprint(pg.run_capture(schema_argv, self.conn))
            self.stage("schema_dump", since)

            since = time.monotonic()
            uploads = [store.upload(store_lib.object_name(self.backup_id)) for store in self.stores]
            writer, counts = self.stream_dump(self.dump_argv(info["pg_dump"], snapshot, schema_only=False), uploads, snap)
            self.stage("dump", since)
            self.timings.update(compress_cpu=round(writer.compress_seconds, 3), encrypt_cpu=round(writer.encryptor.seconds, 3),
                                write=round(writer.sink_seconds, 3))
            snap.raw.rollback()
            snap.close()
            snap = None

            since = time.monotonic()
            for upload in uploads:
                upload.commit()
                committed.append(upload)
            self.stage("store", since)

            verification: dict[str, t.Any] = {"sha256_checked": [], "chunks": writer.encryptor.chunks}
            if self.params["verify"]:
                verification = self.verify(info, writer, counts)
        except FAILURES as exc:
            self.cleanup(uploads, committed, snap)
            what = "verification failed" if committed else "the backup failed"
            self.fail(f"{what}, no backup was kept: {exc}", aborted_uploads=[u.location for u in uploads if u not in committed],
                      deleted_unverified=[u.location for u in committed],
                      uploaded_parts={u.location: u.parts for u in uploads if u.parts})
        except BaseException:
            self.cleanup(uploads, committed, snap)
            raise
        return Dumped(writer, counts, head, fingerprint, verification)

    def manifest(self, info: dict[str, t.Any], created: datetime.datetime, dumped: Dumped) -> dict[str, t.Any]:
        """The manifest of the stored backup, authenticated last (its MAC covers every other field)."""
        writer = dumped.writer
        manifest = {
            "format": "payments.deploy.pg_backup", "manifest_version": 2,
            "backup_id": self.backup_id, "database": self.db, "created_at": iso(created), "completed_at": iso(utc_now()),
            "object": store_lib.object_name(self.backup_id), "sha256": writer.sha256.hexdigest(),
            "server_version": info["server_version"], "server_version_num": info["server_version_num"],
            "pg_dump_version": info["pg_dump_version"], "dump_format": "custom",
            "sizes": {"dump_bytes": writer.dump_bytes, "compressed_bytes": writer.compressed_bytes, "stored_bytes": writer.stored_bytes},
            "compression": {"algorithm": "zstd", "level": self.params["compression_level"], "checksum": True},
            "encryption": {**crypto.ENCRYPTION, "chunk_size": writer.encryptor.chunk_size, "chunks": writer.encryptor.chunks,
                           "key_id": writer.encryptor.key_id},
            "migration_head": dumped.head, "migration_registry_table": self.params["migration_registry_table"],
            "schema_fingerprint": dumped.fingerprint, "row_counts": dumped.counts,
            "snapshot": "row counts and schema taken in the dump's snapshot",
            "verification": dumped.verification, "timings": dict(self.timings),
        }
        manifest["mac"] = crypto.manifest_mac(self.key, manifest)
        return manifest

    def write_manifest(self, manifest: dict[str, t.Any], locations: list[str]) -> None:
        """The manifest beside the object in every destination, last; a failure deletes the objects again."""
        since = time.monotonic()
        try:
            store_lib.put_text_everywhere(self.stores, store_lib.manifest_name(self.backup_id),
                                          json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        except FAILURES as exc:
            self.cleanup_stored(self.stores)  # every object was committed
            self.fail(f"writing the manifest failed, no backup was kept: {exc}", deleted_unverified=locations)
        self.stage("manifest", since)

    def cleanup(self, uploads: list[store_lib.Upload], committed: list[store_lib.Upload], snap: pg.Session | None) -> None:
        """Leave nothing that looks like a backup: abort what is in flight, delete what was stored."""
        for upload in uploads:
            if upload not in committed:
                upload.abort()
        name = store_lib.object_name(self.backup_id)
        self.cleanup_stored([store for store in self.stores if any(u.location == store.location(name) for u in committed)])
        if snap is not None:
            snap.close()

    def cleanup_stored(self, stores: list[store_lib.Store]) -> None:
        """Delete the stored object of this run from ``stores``."""
        name = store_lib.object_name(self.backup_id)
        for store in stores:
            try:
                store.delete(name)
            except store_lib.StoreError as exc:
                self.module.warn(f"could not delete the unverified {store.location(name)}: {exc}")

    def common_result(self, locations: list[str], manifest_locations: list[str], deleted: list[dict[str, t.Any]]) -> dict[str, t.Any]:
        return {"changed": True, "backup_id": self.backup_id, "database": self.db, "locations": locations,
                "manifest_locations": manifest_locations, "deleted": deleted, "commands": self.commands, "queries": self.queries,
                "timings": self.timings, "connection": self.conn.describe()}

    def diff(self, before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, str]:
        def render(listing: dict[str, list[str]]) -> str:
            return "".join(f"{where}: {backup_id}\n" for where, ids in listing.items() for backup_id in ids)

        return {"before": render(before), "after": render(after), "before_header": f"backups of {self.db}",
                "after_header": f"backups of {self.db}"}

    def check_mode_exit(self, info: dict[str, t.Any], locations: list[str], manifest_locations: list[str],
                        before: dict[str, list[str]]) -> t.NoReturn:
        snapshot = "<exported snapshot>"
        self.commands.extend([self.dump_argv(info["pg_dump"], snapshot, True), self.dump_argv(info["pg_dump"], snapshot, False)])
        if self.params["verify"]:
            scratch = f"{self.db}_verify_<random>" if self.params["verify_restore"] else None
            self.commands.append(self.verify_argv(info["pg_restore"], scratch))
        try:
            doomed = self.expired()
        except FAILURES as exc:
            self.fail(str(exc))
        deleted = [{"backup_id": m["backup_id"], "created_at": m.get("created_at"),
                    "locations": [store.location(store_lib.manifest_name(m["backup_id"])),
                                  store.location(store_lib.object_name(m["backup_id"]))]}
                   for store, m in doomed]
        self.timings["total"] = self.elapsed()
        result = self.common_result(locations, manifest_locations, deleted)
        result["verified"] = False
        if self.module._diff:
            gone = {d["backup_id"] for d in deleted}
            after = {where: [self.backup_id] + [i for i in ids if i not in gone] for where, ids in before.items()}
            result["diff"] = self.diff(before, after)
        self.module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(argument_spec=backup_argument_spec(
        dest_dir={"type": "path"},
        compression_level={"type": "int", "default": 3},
        keep={"type": "int"},
        verify={"type": "bool", "default": True},
        verify_restore={"type": "bool", "default": False},
        migration_head={"type": "str"},
        migration_registry_table={"type": "str"},
        lock_wait_timeout={"type": "str"},
    ), supports_check_mode=True, mutually_exclusive=[("migration_head", "migration_registry_table")], required_one_of=[("url", "db")])
    require_libraries(module)
    Backup(module).run()


if __name__ == "__main__":
    main()

# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What pg_backup and pg_restore_backup share: options, required libraries, input checks, failing and timing a run.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import time
import typing as t

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils import _backup_store as store_lib
from ansible_collections.payments.deploy.plugins.module_utils import _crypto as crypto
from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg

MAX_IDENTIFIER = 63


def backup_argument_spec(**options: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    """The PostgreSQL connection (with the client programs), S3 and encryption key options, then the module's own."""
    spec = pg.postgres_argument_spec()
    spec.update(store_lib.s3_argument_spec())
    spec["encryption_key"] = {"type": "str", "no_log": True, "fallback": (env_fallback, ["ENCRYPTION_KEY"])}
    spec.update(options)
    return spec


def require_libraries(module: AnsibleModule) -> None:
    """Fail with missing_required_lib for the first library the run needs and cannot import (boto3 only for S3)."""
    needed = [(crypto.HAS_ZSTANDARD, "zstandard", crypto.ZSTANDARD_IMPORT_ERROR),
              (crypto.HAS_CRYPTOGRAPHY, "cryptography", crypto.CRYPTOGRAPHY_IMPORT_ERROR),
              (pg.HAS_PSYCOPG, "psycopg", pg.PSYCOPG_IMPORT_ERROR)]
    if module.params["s3_bucket"]:
        needed.append((store_lib.HAS_BOTO3, "boto3", store_lib.BOTO3_IMPORT_ERROR))
    for found, lib, error in needed:
        if not found:
            module.fail_json(msg=missing_required_lib(lib), exception=error, commands=[])


class BackupRun:
    """One run of a backup module: its connection, key, commands, queries and timings, and how it fails.

    A subclass lists its own input problems (``option_problems``), what a failure reports besides the common fields
    (``failure_fields``) and what it undoes first (``before_failing``); every problem with the input is reported at
    once, before anything runs.
    """

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.commands: list[list[str]] = []
        self.queries: list[str] = []
        self.conn = pg.Connection(self.params)

    # --- input --------------------------------------------------------------------------------------------

    def option_problems(self) -> list[str]:
        raise NotImplementedError

    def validated_key(self) -> bytes:
        """Check every input at once (connection, key, the module's options) and return the key."""
        problems = list(self.conn.problems)
        key = b""
        try:
            key = crypto.parse_key(self.params["encryption_key"])
        except ValueError as exc:
            problems.append(str(exc))
        problems.extend(self.option_problems())
        if problems:
            self.module.fail_json(msg="; ".join(problems), commands=[], queries=[])
        return key

    def s3_store(self) -> store_lib.S3Store:
        return store_lib.S3Store(self.params)

    # --- reporting ----------------------------------------------------------------------------------------

    def before_failing(self, msg: str) -> str:
        """Undo what must not outlive a failed run; returns the message, saying what was undone."""
        return msg

    def failure_fields(self) -> dict[str, t.Any]:
        """Fields of a failure besides msg, commands, queries and timings."""
        return {}

    def fail(self, msg: str, **extra: t.Any) -> t.NoReturn:
        msg = self.before_failing(msg)
        self.timings["total"] = self.elapsed()
        self.module.fail_json(msg=self.conn.scrub(msg), commands=self.commands, queries=self.queries, timings=self.timings,
                              **self.failure_fields(), **extra)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def stage(self, name: str, since: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + time.monotonic() - since, 3)

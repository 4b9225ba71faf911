#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_replication_info
short_description: Wait until the streaming replicas of a PostgreSQL primary have replayed its WAL, and report their lag
version_added: 0.5.0
description:
  - Connects to the primary and reads C(pg_stat_replication), one row per physical streaming replica (a walsender whose
    connection names no database; logical replication and running C(pg_basebackup)s are left out of the count).
  - With O(wait_for_lsn=current) (the default) it takes the primary's current WAL position (C(pg_current_wal_lsn)) first, then polls until
    every replica in state C(streaming) has replayed up to it (C(replay_lsn) at or after it), so that what was committed
    before the module ran (a migration) is visible on every replica before traffic moves. O(timeout) bounds the wait.
  - It also waits, within O(timeout), for at least O(min_replicas) replicas to stream and for every name of
    O(required_replicas) to stream. By default V(0) replicas is fine, so a primary without replicas passes.
  - At the end it fails when a streaming replica lags more than O(max_lag_bytes) behind the primary's current WAL position
    or more than O(max_lag_seconds) in C(replay_lag). Every failure names the replica (its C(application_name) and
    address) and says how far behind it is.
  - A replica reports its replay position to the primary every C(wal_receiver_status_interval) (10 s by default) when no
    new WAL arrives, so on a quiet primary the wait may take up to that long; lower it on the replicas to shorten the wait.
  - Read-only (C(default_transaction_read_only)); changes nothing on the primary nor on the replicas.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.postgres
  - payments.deploy.postgres.action_group
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  # The connection options come from the payments.deploy.postgres fragment.
  wait_for_lsn:
    description:
      - V(current) waits until every streaming replica has replayed the primary's WAL up to the position it had when the
        module started (its C(pg_current_wal_lsn)).
      - V(none) does not wait for a position; only O(min_replicas) and O(required_replicas) are waited for.
      - A WAL position such as V(0/3000148) (recorded earlier, for example right after the migrations) waits for that
        position; one that lies ahead of the primary's current position fails.
    type: str
    default: current
  timeout:
    description:
      - Seconds to wait, from the start of the module, for the replicas to catch up and for enough of them to stream. When
        they have not, the module fails, naming each replica that is behind or missing. V(0) looks once.
    type: int
    default: 60
  poll_interval:
    description: Seconds between two reads of C(pg_stat_replication) while waiting (from 0.05 to 60).
    type: float
    default: 0.5
  min_replicas:
    description:
      - How many replicas must be in state C(streaming). V(0) (the default) accepts a primary without replicas, as the
        checklist's "replication is configured (if applicable)" does.
    type: int
    default: 0
  required_replicas:
    description:
      - The C(application_name)s of replicas that must be streaming (set in each replica's C(primary_conninfo), or its
        C(cluster_name)). A replica that is down is then named in the failure, which O(min_replicas) alone cannot do.
    type: list
    elements: str
    default: []
  max_lag_bytes:
    description:
      - Fail when a streaming replica, once the wait is over, has replayed more than this many bytes less than the
        primary's current WAL position. Omitted, the byte lag is reported and not bounded.
    type: int
  max_lag_seconds:
    description:
      - Fail when a streaming replica's C(replay_lag), once the wait is over, is more than this many seconds. PostgreSQL
        clears the lag of a replica that has replayed everything (reported as V(null), counted as V(0)). Omitted, the lag
        is reported and not bounded.
    type: float
notes:
  - The role connecting must see the details of C(pg_stat_replication), which PostgreSQL shows only to superusers and
    members of C(pg_read_all_stats) (C(GRANT pg_monitor TO payments)); without them every replica's details are hidden and
    the module fails saying so.
  - Run it against the primary. A server in recovery (a standby) fails the module.
seealso:
  - module: payments.deploy.db_migrate
  - name: pg_stat_replication
    description: What each column of the view means.
    link: https://www.postgresql.org/docs/15/monitoring-stats.html#MONITORING-PG-STAT-REPLICATION-VIEW
"""

EXAMPLES = r"""
- name: Wait until every replica has replayed the migrations, at most 16 MiB and 30 s behind
  payments.deploy.pg_replication_info:
    url: "{{ payments_env.DATABASE_URL }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/certs/db-ca.pem
    min_replicas: 1
    required_replicas: [db2]
    max_lag_bytes: 16777216
    max_lag_seconds: 30
    timeout: 120
  register: replication

- name: Report
  ansible.builtin.debug:
    msg: "{{ replication.replicas | map(attribute='application_name') | join(', ') }} replayed {{ replication.target_lsn }}
      in {{ replication.waited_seconds }} s"
"""

RETURN = r"""
replicas:
  description:
    - One entry per physical replica connected to the primary when the module ended, with its state, positions, the lags
      PostgreSQL measured (seconds, V(null) when there is none to measure) and its byte lag (C(lag_bytes), the primary's
      current WAL position minus C(replay_lsn)). C(caught_up) tells whether it has replayed RV(target_lsn) (V(null)
      without a target).
  returned: always
  type: list
  elements: dict
  sample: [{"application_name": "db2", "client_addr": "10.0.0.12", "client_hostname": null, "state": "streaming",
            "sync_state": "async", "sent_lsn": "0/3000148", "write_lsn": "0/3000148", "flush_lsn": "0/3000148",
            "replay_lsn": "0/3000148", "write_lag": 0.0004, "flush_lag": 0.0011, "replay_lag": 0.0012, "lag_bytes": 0,
            "caught_up": true, "reply_time": "2026-03-01T10:00:02.120000+00:00"}]
target_lsn:
  description: The WAL position waited for (the primary's C(pg_current_wal_lsn) at the start, or O(wait_for_lsn)); V(null) with V(none).
  returned: always
  type: str
  sample: 0/3000148
current_lsn:
  description: The primary's WAL position at the end, against which C(lag_bytes) is measured.
  returned: always
  type: str
  sample: 0/3000200
streaming:
  description: How many replicas were in state C(streaming) at the end.
  returned: always
  type: int
  sample: 1
waited_seconds:
  description: Seconds from the first read of the primary until the replicas had caught up (or the timeout).
  returned: always
  type: float
  sample: 1.02
connection:
  description: The connection settings used (never the password).
  returned: always
  type: dict
  sample: {"host": "db1.internal", "port": 5432, "user": "payments", "ssl_mode": "verify-full", "ca_cert": null}
"""

import re
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils import _postgres as pg

LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}\Z")
# Physical walsenders only: a logical one (a subscription) is connected to a database.
REPLICAS_SQL = """
SELECT r.application_name, host(r.client_addr), r.client_hostname, r.state, r.sync_state,
       r.sent_lsn::text, r.write_lsn::text, r.flush_lsn::text, r.replay_lsn::text,
       extract(epoch FROM r.write_lag)::float8, extract(epoch FROM r.flush_lag)::float8, extract(epoch FROM r.replay_lag)::float8,
       pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::int8,
       r.replay_lsn >= %s::pg_lsn, r.reply_time, r.flush_lsn >= %s::pg_lsn
FROM pg_stat_replication r LEFT JOIN pg_stat_activity a ON a.pid = r.pid
WHERE a.datname IS NULL
ORDER BY r.application_name, host(r.client_addr), r.pid
"""
COLUMNS = ("application_name", "client_addr", "client_hostname", "state", "sync_state", "sent_lsn", "write_lsn", "flush_lsn",
           "replay_lsn", "write_lag", "flush_lag", "replay_lag", "lag_bytes", "caught_up", "reply_time")


class ReplicationFailed(Exception):
    """The primary cannot be checked (a standby, hidden details, a position ahead of it); the message says why."""


def named(replica: dict[str, t.Any]) -> str:
    where = replica["client_addr"] or replica["client_hostname"] or "a local socket"
    return f"replica {replica['application_name']!r} ({where})"


def how_far(replica: dict[str, t.Any], target: str) -> str:
    """Where a streaming replica stands against ``target``, and the likely reason when it received the WAL already."""
    if replica["replay_lsn"] is None:
        return "it has not reported a replay position yet"
    text = f"replayed up to {replica['replay_lsn']}, received {replica['flush_lsn']}"
    if replica["lag_bytes"] is not None:
        text += f", {replica['lag_bytes']} bytes behind the primary"
    if replica["received_target"]:
        text += f"; it has received {target} but not replayed it (replay paused, or held back by a query on the replica)"
    return text


class ReplicationInfo:
    """One run of the module."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.conn = pg.Connection(self.params)
        self.db: str = self.conn.dbname or ""
        self.validate()
        self.result: dict[str, t.Any] = {"changed": False, "replicas": [], "target_lsn": None, "current_lsn": None, "streaming": 0,
                                         "waited_seconds": 0.0, "connection": self.conn.describe()}

    def validate(self) -> None:
        """Every input problem at once, before anything is connected to."""
        p = self.params
        problems = []
        if not self.db.strip():
            problems.append("db must not be empty (set db, or url with a database name)")
        elif "=" in self.db or "://" in self.db or not self.db.isprintable():
            problems.append(f"db {self.db[:100]!r} must be a database name, not a connection string or a line break")
        if p["wait_for_lsn"] not in ("current", "none") and not LSN.match(p["wait_for_lsn"]):
            problems.append(f"wait_for_lsn {p['wait_for_lsn'][:100]!r} must be current, none or a WAL position such as 0/3000148")
        if p["timeout"] < 0:
            problems.append("timeout must be 0 seconds or more")
        if not 0.05 <= p["poll_interval"] <= 60:
            problems.append("poll_interval must be from 0.05 to 60 seconds")
        for option in ("min_replicas", "max_lag_bytes", "max_lag_seconds"):
            if p[option] is not None and p[option] < 0:
                problems.append(f"{option} must not be negative")
        bad_names = [name for name in p["required_replicas"] if not name.strip() or not name.isprintable()]
        if bad_names:
            problems.append(f"required_replicas holds a name that is empty or not printable: {bad_names[0][:100]!r}")
        problems += self.conn.problems
        if problems:
            self.module.fail_json(msg="; ".join(problems), changed=False)

    def read(self, session: pg.Session, target: str | None) -> list[dict[str, t.Any]]:
        replicas = []
        for row in session.execute(REPLICAS_SQL, (target, target), record=False).fetchall():
            replica = dict(zip((*COLUMNS, "received_target"), row))
            if replica["state"] is None:
                user = self.conn.user
                raise ReplicationFailed(f"role {user!r} may not read the details of pg_stat_replication (PostgreSQL hides them "
                                        f"from roles that are not superusers or members of pg_read_all_stats): run "
                                        f"GRANT pg_monitor TO {pg.quote_ident(user)}; on the primary, or connect as such a role")
            if replica["reply_time"] is not None:
                replica["reply_time"] = replica["reply_time"].isoformat()
            replicas.append(replica)
        return replicas

    def pending(self, replicas: list[dict[str, t.Any]], target: str | None) -> list[str]:
        """What is still missing; empty when the replicas are where they must be."""
        streaming = [r for r in replicas if r["state"] == "streaming"]
        missing = []
        names = {r["application_name"] for r in streaming}
        for name in self.params["required_replicas"]:
            if name not in names:
                other = [f"{r['state']}" for r in replicas if r["application_name"] == name]
                missing.append(f"replica {name!r} is not streaming ({'state ' + other[0] if other else 'not connected to the primary'})")
        if len(streaming) < self.params["min_replicas"]:
            others = "; ".join(f"{named(r)} is in state {r['state']}" for r in replicas if r["state"] != "streaming")
            missing.append(f"{len(streaming)} of the {self.params['min_replicas']} replica(s) required stream from the primary"
                           + (f" ({others})" if others else " (none is connected)"))
        if target is not None:
            missing += [f"{named(r)} has not replayed {target}: {how_far(r, target)}" for r in streaming if not r["caught_up"]]
        return missing

    def bounds(self, replicas: list[dict[str, t.Any]]) -> list[str]:
        problems = []
        max_bytes, max_seconds = self.params["max_lag_bytes"], self.params["max_lag_seconds"]
        for replica in (r for r in replicas if r["state"] == "streaming"):
            if max_bytes is not None and (replica["lag_bytes"] or 0) > max_bytes:
                problems.append(f"{named(replica)} is {replica['lag_bytes']} bytes behind the primary (replayed up to "
                                f"{replica['replay_lsn']}), more than max_lag_bytes {max_bytes}")
            if max_seconds is not None and (replica["replay_lag"] or 0) > max_seconds:
                problems.append(f"{named(replica)} replays {replica['replay_lag']:.3f} s behind the primary, more than "
                                f"max_lag_seconds {max_seconds:g}")
        return problems

    def start(self, session: pg.Session) -> str | None:
        """The WAL position to wait for; fails on a standby and on a position the primary has not reached."""
        session.execute("SET default_transaction_read_only = on")
        if session.value("SELECT pg_is_in_recovery()"):
            raise ReplicationFailed(f"the server at {self.conn.host}:{self.conn.port} is a standby (in recovery): "
                                    "connect to the primary")
        wanted = self.params["wait_for_lsn"]
        if wanted == "none":
            return None
        if wanted == "current":
            return str(session.value("SELECT pg_current_wal_lsn()::text"))
        target = wanted.upper()
        current = str(session.value("SELECT pg_current_wal_lsn()::text"))
        if session.value("SELECT %s::pg_lsn > %s::pg_lsn", (target, current)):
            raise ReplicationFailed(f"wait_for_lsn {target} lies ahead of the primary's current WAL position {current}")
        return target

    def wait(self, session: pg.Session, target: str | None) -> list[str]:
        """Poll until nothing is pending or the timeout; what is still pending then."""
        started = time.monotonic()
        deadline = started + self.params["timeout"]
        while True:
            replicas = self.read(session, target)
            missing = self.pending(replicas, target)
            now = time.monotonic()
            if not missing or now >= deadline:
                break
            time.sleep(min(self.params["poll_interval"], deadline - now))
        self.result["waited_seconds"] = round(time.monotonic() - started, 3)
        self.result["current_lsn"] = str(session.value("SELECT pg_current_wal_lsn()::text"))
        self.result["replicas"] = [{key: r[key] for key in COLUMNS} for r in replicas]
        self.result["streaming"] = sum(1 for r in replicas if r["state"] == "streaming")
        for replica in replicas:
            if replica["state"] != "streaming" and replica["application_name"] not in self.params["required_replicas"]:
                self.module.warn(f"{named(replica)} is in state {replica['state']}, not streaming: it was not waited for")
        return missing

    def run(self) -> t.NoReturn:
        session = None
        try:
            session = pg.Session(self.conn, self.db, [])
            target = self.result["target_lsn"] = self.start(session)
            missing = self.wait(session, target)
        except (pg.PostgresError, ReplicationFailed) as exc:
            self.module.fail_json(msg=self.conn.scrub(str(exc)), **self.result)
        finally:
            if session is not None:
                session.close()
        if missing:
            self.module.fail_json(msg=f"the replicas did not catch up within timeout {self.params['timeout']} s: " + "; ".join(missing),
                                  **self.result)
        problems = self.bounds(self.result["replicas"])
        if problems:
            self.module.fail_json(msg="replication lag above its bound: " + "; ".join(problems), **self.result)
        self.module.exit_json(**self.result)


def main() -> None:
    argument_spec = pg.postgres_argument_spec(client_programs=False)  # no client program runs
    argument_spec.update(
        wait_for_lsn={"type": "str", "default": "current"},
        timeout={"type": "int", "default": 60},
        poll_interval={"type": "float", "default": 0.5},
        min_replicas={"type": "int", "default": 0},
        required_replicas={"type": "list", "elements": "str", "default": []},
        max_lag_bytes={"type": "int"},
        max_lag_seconds={"type": "float"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, required_one_of=[("url", "db")])
    if not pg.HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=pg.PSYCOPG_IMPORT_ERROR)
    ReplicationInfo(module).run()


if __name__ == "__main__":
    main()

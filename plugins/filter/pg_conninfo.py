# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: pg_conninfo
short_description: A PostgreSQL connection URL as libpq reads it
version_added: 0.4.0
description:
  - Parses a C(postgresql://) URL (or a libpq connection string), such as a service's C(DATABASE_URL), with libpq
    (through psycopg), so that a percent-encoded password (C(p%40ss)) is decoded and every query parameter
    (C(?sslmode=verify-full&sslrootcert=...)) is kept. A generic URL split does neither.
  - Fails, without showing the URL (it holds a password), when libpq cannot parse it, when it names no database, or
    when its C(sslmode) is not a libpq one.
  - Needs psycopg 3.1 or newer on the controller.
author: "Payments Platform Team (@payments-platform)"
positional: _input
options:
  _input:
    description: The URL or connection string.
    type: str
    required: true
  errors:
    description:
      - V(strict) fails the template on a URL that cannot be used; V(report) returns a dictionary with one key,
        C(error), saying why, so that a check can list the problem with others.
    type: str
    default: strict
    choices: [strict, report]
"""

EXAMPLES = r"""
# The modules that connect take the whole URL themselves (their url option); the filter is for checks and for the
# parts a task needs on its own.
- name: Refuse a DATABASE_URL that does not use TLS
  ansible.builtin.assert:
    that: (payments_env.DATABASE_URL | payments.deploy.pg_conninfo).tls
    fail_msg: DATABASE_URL must set sslmode=verify-full (with sslrootcert)

- name: Restore the database the service uses
  payments.deploy.pg_restore_backup:
    url: "{{ payments_db_admin_url }}"
    target_db: "{{ (payments_env.DATABASE_URL | payments.deploy.pg_conninfo).dbname }}"
    backup_id: latest
    src_dir: /var/backups/postgres
"""

RETURN = r"""
_value:
  description:
    - libpq's keywords that the URL sets (C(host), C(port), C(user), C(password), C(dbname), C(sslmode),
      C(sslrootcert), ...), decoded; keywords it does not set are absent.
    - C(tls) is added, true when C(sslmode) is C(require), C(verify-ca) or C(verify-full); C(loopback) is added, true
      when every host is a loopback address or a Unix socket directory.
    - With O(errors=report), a URL that cannot be used gives a dictionary with one key, C(error), saying why.
  type: dict
"""

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.payments.deploy.plugins.module_utils._conninfo import (
    TLS_MODES,
    ConninfoError,
    is_loopback,
    parse_database_url,
)


def pg_conninfo(url: str, errors: str = "strict") -> dict[str, t.Any]:
    """The parsed URL, with ``tls`` and ``loopback`` added."""
    if errors not in ("strict", "report"):
        raise AnsibleFilterError(f"pg_conninfo: errors must be 'strict' or 'report', not {errors!r}")
    try:
        parsed: dict[str, t.Any] = dict(parse_database_url(url, "the PostgreSQL URL"))
    except ConninfoError as exc:
        if errors == "report":
            return {"error": str(exc)}
        raise AnsibleFilterError(str(exc)) from None
    parsed["tls"] = parsed.get("sslmode") in TLS_MODES
    parsed["loopback"] = is_loopback(parsed)
    return parsed


class FilterModule:
    """payments.deploy.pg_conninfo."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"pg_conninfo": pg_conninfo}

#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cache_namespace_clear
short_description: Delete every Redis key under one namespace, in batches
version_added: 0.1.0
description:
  - Deletes the keys C(NAMESPACE:...) of a Redis database, for example the cache keys a release owns
    (C(payments:1.1.0:...)) after it was rolled back.
  - Walks the keyspace with C(SCAN) (never C(KEYS), which blocks the server) and deletes each batch with C(UNLINK),
    which frees the memory in the background. Keys written while it runs may remain; a re-run deletes them.
  - Refuses a namespace that is empty, holds only separators, or holds a glob character (C(*), C(?), C([), C(])),
    before it connects.
  - Idempotent (a second run finds nothing to delete), with check mode (counts without deleting).
author: "Payments Platform Team (@payments-platform)"
requirements:
  - redis (the Python library)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Scans and counts the keys that would be deleted; deletes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  url:
    description:
      - The Redis URL, for example C(redis://:PASSWORD@127.0.0.1:6379/0) or C(rediss://...) for TLS. Never shown.
    type: str
    required: true
  password:
    description:
      - The password, when it is not in O(url) (it overrides the one there). Never shown.
    type: str
  namespace:
    description:
      - The namespace, without the trailing separator. Only keys starting with C(NAMESPACE:) are deleted, never the
        namespace key itself nor keys of a longer namespace (C(payments:1.1) does not touch C(payments:1.10:...)).
    type: str
    required: true
  separator:
    description:
      - What separates the namespace from the rest of a key.
    type: str
    default: ":"
  batch_size:
    description:
      - How many keys each C(SCAN) call is asked to return, and at most how many one C(UNLINK) deletes (1 to 10000).
    type: int
    default: 500
  timeout:
    description:
      - Seconds to wait for a connection and for each reply.
      - A finite number above V(0) and at most V(300); V(nan) and V(inf) fail before anything is connected to.
    type: float
    default: 5
seealso:
  - name: Redis SCAN
    description: Why SCAN and not KEYS, and what SCAN guarantees.
    link: https://redis.io/docs/latest/commands/scan/
"""

EXAMPLES = r"""
- name: Clear the cache keys of the rolled-back release
  payments.deploy.cache_namespace_clear:
    url: "{{ payments_env.REDIS_URL }}"
    namespace: "payments:1.1.0"
  register: cleared

- name: Count them only
  payments.deploy.cache_namespace_clear:
    url: redis://127.0.0.1:6379/0
    password: "{{ vault_redis_password }}"
    namespace: "payments:1.1.0"
  check_mode: true
"""

RETURN = r"""
namespace:
  description: The namespace cleared.
  returned: always
  type: str
  sample: "payments:1.1.0"
pattern:
  description: The C(SCAN MATCH) pattern used (glob characters escaped).
  returned: success
  type: str
  sample: "payments:1.1.0:*"
matched:
  description: How many keys under the namespace were found.
  returned: success
  type: int
  sample: 1200
deleted:
  description: How many keys were deleted (0 in check mode; a key that expired in between is not counted).
  returned: success
  type: int
  sample: 1200
batches:
  description: How many C(UNLINK) calls were made.
  returned: success
  type: int
  sample: 3
msg:
  description: What was done, in one sentence.
  returned: always
  type: str
  sample: "deleted 1200 keys under payments:1.1.0 in 3 batches"
"""

import traceback
import typing as t

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils._numbers import number_problem

REDIS_IMPORT_ERROR: str | None
try:
    import redis
except ImportError:
    REDIS_IMPORT_ERROR = traceback.format_exc()
else:
    REDIS_IMPORT_ERROR = None

GLOB_CHARACTERS = "*?[]"
MAX_BATCH = 10000
# redis-py hands the timeout to the socket, which refuses inf (OverflowError) and waits forever on a huge one.
MAX_TIMEOUT = 300.0


def namespace_problems(namespace: str | None, separator: str | None) -> list[str]:
    """Why the namespace cannot be cleared safely (empty when it can)."""
    problems = []
    if not separator:
        problems.append("separator must not be empty")
    stripped = (namespace or "").strip()
    if not stripped:
        problems.append("namespace must not be empty: it would clear every key of the database")
    elif any(c in stripped for c in GLOB_CHARACTERS):
        problems.append(f"namespace {namespace!r} holds a glob character ({', '.join(GLOB_CHARACTERS)}): it is a "
                        "literal prefix, and a wildcard would clear keys of other namespaces")
    elif separator and not stripped.replace(separator, "").strip():
        problems.append(f"namespace {namespace!r} holds only separators")
    elif stripped != namespace:
        problems.append(f"namespace {namespace!r} starts or ends with white space")
    return problems


def validate(params: t.Mapping[str, t.Any]) -> list[str]:
    """Every problem with the options, found before connecting."""
    problems = namespace_problems(params["namespace"], params["separator"])
    if not 1 <= params["batch_size"] <= MAX_BATCH:
        problems.append(f"batch_size must be between 1 and {MAX_BATCH}, got {params['batch_size']}")
    problem = number_problem("timeout", params["timeout"], maximum=MAX_TIMEOUT)
    if problem:
        problems.append(problem)
    if not (params["url"] or "").startswith(("redis://", "rediss://", "unix://")):
        problems.append("url must be a redis://, rediss:// or unix:// URL")
    return problems


def match_pattern(namespace: str, separator: str) -> str:
    """The SCAN MATCH pattern for the keys under the namespace, its glob characters escaped."""
    escaped = "".join("\\" + c if c in GLOB_CHARACTERS + "\\" else c for c in namespace + separator)
    return escaped + "*"


def clear(client: t.Any, namespace: str, separator: str, batch_size: int, check_mode: bool) -> dict[str, t.Any]:
    """SCAN the namespace and UNLINK each batch; in check mode only count."""
    pattern = match_pattern(namespace, separator)
    prefix = (namespace + separator).encode()
    matched = deleted = batches = 0
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, match=pattern, count=batch_size)
        # SCAN may return a key twice (the keyspace was rehashed meanwhile); UNLINK counts only those it removed.
        keys = [k for k in keys if k.startswith(prefix)]
        matched += len(keys)
        for start in range(0, len(keys), batch_size):
            if not check_mode:
                deleted += int(client.unlink(*keys[start:start + batch_size]))
                batches += 1
        if int(cursor) == 0:
            break
    return {"pattern": pattern, "matched": matched, "deleted": deleted, "batches": batches}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True, "no_log": True},
            "password": {"type": "str", "no_log": True},
            "namespace": {"type": "str", "required": True},
            "separator": {"type": "str", "default": ":"},
            "batch_size": {"type": "int", "default": 500},
            "timeout": {"type": "float", "default": 5},
        },
        supports_check_mode=True,
    )
    params = module.params
    problems = validate(params)
    if problems:
        module.fail_json(msg="; ".join(problems), namespace=params["namespace"])
    if REDIS_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR, namespace=params["namespace"])
    namespace, separator = params["namespace"], params["separator"]
    options: dict[str, t.Any] = {"socket_connect_timeout": params["timeout"], "socket_timeout": params["timeout"]}
    if params["password"] is not None:
        options["password"] = params["password"]
    try:
        client = redis.Redis.from_url(params["url"], **options)
        result = clear(client, namespace, separator, params["batch_size"], module.check_mode)
    except (redis.RedisError, ValueError) as exc:
        # The message of a connection error names host and port, never the URL's password.
        module.fail_json(msg=f"clearing {namespace}{separator}* failed: {type(exc).__name__}: {exc}", namespace=namespace)
    if module.check_mode:
        msg = f"would delete {result['matched']} keys under {namespace}"
    elif result["deleted"]:
        msg = f"deleted {result['deleted']} keys under {namespace} in {result['batches']} batches"
    else:
        msg = f"no key under {namespace}: nothing to delete"
    changed = bool(result["matched"] if module.check_mode else result["deleted"])
    module.exit_json(changed=changed, namespace=namespace, msg=msg, **result)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_lock
short_description: Take, renew or release the deploy lock of an environment (a lease with an expiry)
version_added: 0.1.0
description:
  - Makes sure only one deploy or rollback runs per environment at a time. The lock is a JSON file on the host the
    module runs on (the first load balancer host, beside the deploy journal) holding the holder, its current phase,
    a token and the time its lease expires.
  - O(state=present) takes the lock when there is none or when its lease has expired (it is then taken over and
    RV(taken_over) names the run that held it), or renews it when O(token) holds it. When another run holds an
    unexpired lease it fails at once, changing nothing, with a message naming that run and how to release its lock.
  - O(state=absent) releases the lock when O(token) holds it. Without a lock, or when another run holds it, nothing
    changes (a failed run must never release somebody else's lock), unless O(force=true).
  - Every read-check-write happens under C(flock) on C(PATH.guard); the new lock is written to a temporary file,
    synced and renamed into place (mode C(0640)). The guard file is left in place.
  - A lock file that cannot be read or makes no sense fails the module, naming the file and the problem; only a
    forced release removes it.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the lock and fails as a real run would; creates and writes nothing.
      - A lock taken in check mode has no token.
  diff_mode:
    support: full
    details: Before and after, the holder, phase and expiry of the lock.
  platform:
    platforms: posix
options:
  path:
    description:
      - The lock file, an absolute path, for example C(/var/lib/payments/journal/production/deploy.lock).
      - Its directory is created with mode C(0750) when missing.
    type: path
    required: true
  environment:
    description:
      - The environment the lock protects (letters, digits, C(_) and C(-)).
      - Used in the messages and recorded in the lock.
    type: str
    required: true
  state:
    description:
      - V(present) takes the lock, or renews it when O(token) is given.
      - V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  token:
    description:
      - The value RV(token) returned when this run took the lock (32 hex digits).
        It identifies the run, it is not a secret.
      - With O(state=present), renew the lock; fails when the token no longer holds it (its lease ran out and another
        run took it, or it was released by force), because the run must stop rather than go on unprotected.
      - With O(state=absent), release the lock only when the token holds it.
    type: str
  lease_seconds:
    description:
      - How long the lock holds without being renewed, from now (1 to 86400). A run that dies leaves a lock that
        expires by itself after this time.
    type: int
    default: 900
  holder:
    description:
      - Who takes the lock, recorded with it and shown to any run it refuses. Plain string values; the keys
        C(user), C(controller), C(playbook) and C(operation) are shown first.
      - Recorded when the lock is taken; a renewal keeps the holder that took it.
    type: dict
    default: {}
  phase:
    description:
      - What the run is doing now, recorded when the lock is taken or renewed (a renewal without it keeps the last one).
    type: str
  force:
    description:
      - With O(state=absent), release the lock whoever holds it, and a corrupt lock file too. Needs O(reason).
    type: bool
    default: false
  reason:
    description:
      - Why the lock is released by force; required non-empty with O(force=true), returned in RV(reason).
    type: str
notes:
  - The lock lives on the load balancer rather than in the database because a rollback may restore the database
    (renaming the current one, with any lock kept in it), and because the database may be what is failing during
    an incident; the load balancer is what the lock protects.
seealso:
  - name: The deploy lock
    description: How the deploy and rollback playbooks use the lock, and how to release a dead run's lock.
    link: https://github.com/payments-platform/payments.deploy/blob/main/docs/deploy-lock.md
"""

EXAMPLES = r"""
- name: Take the deploy lock of production
  payments.deploy.deploy_lock:
    path: /var/lib/payments/journal/production/deploy.lock
    environment: production
    holder:
      user: alice
      controller: ctl-1
      playbook: deploy.yml
      operation: deploy 1.1.0
    phase: preflight
  register: lock

- name: Renew it before a long phase, recording the phase
  payments.deploy.deploy_lock:
    path: /var/lib/payments/journal/production/deploy.lock
    environment: production
    token: "{{ lock.token }}"
    phase: migrate

- name: Release it at the end of the run
  payments.deploy.deploy_lock:
    path: /var/lib/payments/journal/production/deploy.lock
    environment: production
    token: "{{ lock.token }}"
    state: absent

- name: Release the lock of a run that died
  payments.deploy.deploy_lock:
    path: /var/lib/payments/journal/production/deploy.lock
    environment: production
    state: absent
    force: true
    reason: "deploy of 1.1.0 killed with its controller; checked that nothing runs"
"""

RETURN = r"""
msg:
  description: What was done, or why nothing was.
  returned: always
  type: str
  sample: acquired the deploy lock of production until 2026-01-01T10:15:00Z
acquired:
  description: Whether the lock was taken (fresh or taken over) by this run.
  returned: success
  type: bool
renewed:
  description: Whether O(token) renewed the lock.
  returned: success
  type: bool
released:
  description: The lock that was removed (without its token); V(null) when nothing was released.
  returned: success
  type: dict
  sample: {"holder": {"user": "alice", "operation": "deploy 1.1.0"}, "phase": "migrate",
           "expires_at_iso": "2026-01-01T10:15:00Z"}
taken_over:
  description: The expired lock that was replaced (without its token); V(null) unless an expired lock was taken over.
  returned: success
  type: dict
token:
  description:
    - The token of the lock this run holds after a take or a renewal, to pass to later renewals and the release.
    - V(null) after a release, and when a lock is taken in check mode.
  returned: success
  type: str
  sample: 3f0c5b1e9a7d44c2b8e6f1a0d9c3b7e5
lock:
  description:
    - The lock as it is now (in check mode, would be), without its token; V(null) when there is none.
    - On failure, the lock found.
    - C(acquired_at), C(renewed_at) and C(expires_at) are epoch seconds, each with an ISO 8601 UTC C(_iso) twin.
  returned: always
  type: dict
  sample:
    environment: production
    format: 1
    holder: {"user": "alice", "controller": "ctl-1", "playbook": "deploy.yml", "operation": "deploy 1.1.0"}
    phase: migrate
    lease_seconds: 900
    acquired_at: 1767261600.0
    acquired_at_iso: "2026-01-01T10:00:00Z"
    renewed_at: 1767261700.0
    renewed_at_iso: "2026-01-01T10:01:40Z"
    expires_at: 1767262600.0
    expires_at_iso: "2026-01-01T10:16:40Z"
expires_at:
  description: When the lease of RV(lock) expires (ISO 8601 UTC); V(null) when there is no lock.
  returned: always
  type: str
  sample: "2026-01-01T10:16:40Z"
seconds_left:
  description: Whole seconds until the lease of RV(lock) expires (0 when it has); V(null) when there is no lock.
  returned: always
  type: int
  sample: 897
reason:
  description: The reason of a forced release.
  returned: when O(force=true)
  type: str
"""

import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils._lease import (
    Lock,
    LeaseError,
    LockHeld,
    LockLost,
    Outcome,
    acquire,
    clean_holder,
    input_problems,
    iso,
    public,
    release,
    seconds_left,
    unlock_command,
)


def where(lock: Lock | None) -> dict[str, t.Any]:
    """The lock-describing results: the lock without its token, when it expires, seconds left."""
    return {
        "lock": public(lock),
        "expires_at": iso(lock["expires_at"]) if lock and "expires_at" in lock else None,
        "seconds_left": seconds_left(lock, time.time()),
    }


def summary(lock: Lock | None) -> str:
    if lock is None:
        return ""
    if "corrupt" in lock:
        return f"corrupt: {lock['corrupt']}\n"
    holder = lock.get("holder") or {}
    lines = [f"{key}: {holder[key]}" for key in sorted(holder)]
    lines += [f"phase: {lock.get('phase')}", f"expires: {iso(lock['expires_at'])}"]
    return "".join(line + "\n" for line in lines)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "environment": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            # identifies the run holding the lock; not a secret (a forced release needs no token)
            "token": {"type": "str", "no_log": False},
            "lease_seconds": {"type": "int", "default": 900},
            "holder": {"type": "dict", "default": {}},
            "phase": {"type": "str"},
            "force": {"type": "bool", "default": False},
            "reason": {"type": "str"},
        },
        supports_check_mode=True,
    )
    params = module.params
    path, environment = params["path"], params["environment"]
    problems = input_problems(environment, params["state"], params["lease_seconds"], params["token"], params["force"],
                              params["reason"], params["holder"])
    if not path.startswith("/"):
        problems.insert(0, f"path {path!r} must be absolute")
    elif path.endswith("/"):
        problems.insert(0, f"path {path!r} must name a file, not a directory")
    if problems:
        module.fail_json(msg="; ".join(problems), lock=None)

    check = module.check_mode
    try:
        if params["state"] == "present":
            outcome: Outcome = acquire(path, environment=environment, holder=clean_holder(params["holder"]),
                                       lease_seconds=params["lease_seconds"], phase=params["phase"],
                                       token=params["token"], check=check)
        else:
            outcome = release(path, environment=environment, token=params["token"], force=params["force"],
                              reason=params["reason"], check=check)
    except (LockHeld, LockLost) as exc:
        module.fail_json(msg=str(exc), **where(exc.lock))
    except LeaseError as exc:
        module.fail_json(msg=f"{exc}. Nothing was changed. Once you have checked that no deploy or rollback of "
                             f"{environment} runs, release it by force: {unlock_command(environment)}", lock=None)

    if outcome.taken_over is not None:
        module.warn(outcome.msg)
    result: dict[str, t.Any] = {
        "changed": outcome.changed,
        "msg": outcome.msg,
        "acquired": outcome.acquired,
        "renewed": outcome.renewed,
        "released": public(outcome.released),
        "taken_over": public(outcome.taken_over),
        "token": outcome.lock.get("token") if outcome.lock is not None and params["state"] == "present" else None,
        **where(outcome.lock),
    }
    if params["force"]:
        result["reason"] = params["reason"]
    if outcome.changed and module._diff:
        result["diff"] = {"before": summary(outcome.before), "after": summary(outcome.lock),
                          "before_header": path, "after_header": path}
    module.exit_json(**result)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rollback_switch
short_description: Flip an environment back to the colour and release that served before its last deploy, in one call
version_added: 0.3.0
description:
  - The fast path of a rollback, run on the load balancer host. In one module call it takes the environment's deploy
    lock, reads the environment's last deploy from the journal, checks that the colour to go back to still serves
    the release it ran, and routes the environment back to it through the HAProxy map.
  - B(Lock.) Takes the deploy lock exactly as M(payments.deploy.deploy_lock) does (same lease file, format and
    guard), or renews it when O(token) is given. When another run holds an unexpired lease it fails at once,
    naming the holder, changing nothing. When this call took the lock and then fails having changed nothing, it
    releases the lock again.
  - B(Journal.) Reads C(JOURNAL_DIR/ENVIRONMENT/last-deploy.json) as the deploy_journal role writes it. The deploy
    went from C(colour_from) (C(release_from)) to C(colour_to) (C(release_to)); the rollback goes back to
    C(colour_from). An unfinished switch (C(switch-intent.json) beside it) is newer and is read instead, as the
    role's C(read) does. Fails when there is no such record, when the deploy replaced no live release, and when the
    record is corrupt, of another environment or names colours outside O(allowed_colours).
  - B(Checks.) Every server of the backend of the colour to go back to must be C(UP) in HAProxy's C(show stat)
    (its own health check, C(/healthz/lb) in this collection's HAProxy configuration, which covers the process and
    PostgreSQL), and must answer C(GET /version) with the release to go back to (and, when it says, that colour).
    The servers are asked at the address HAProxy has for them, all at once, each within O(http_timeout).
  - When no server of the live colour is C(UP) either, HAProxy's status is reported but does not stop the flip
    (an outage both colours share, such as PostgreSQL); C(/version) still must answer with the release.
  - C(/readyz) is never asked. It also fails when a dependency shared by both colours is down (Stripe, Redis, SMTP);
    that is no reason to keep traffic on the release being rolled back.
  - B(Flip.) C(set map) (C(add map) when the key is missing) through the runtime API, read back, then the map file on
    disk rewritten atomically, as M(payments.deploy.haproxy_switch) does. When the file cannot be written, the
    runtime value is set back and the module fails.
  - Refuses, sending nothing, when HAProxy serves the key a value that is not a plain word (letters, digits, C(_),
    C(.), C(:), C(-)), since it could not be set back safely after a failed write of the map file.
  - Idempotent. When HAProxy already routes the environment to the colour to go back to, nothing is flipped
    (C(changed=false) unless the map file on disk still has to be fixed) and the checks are reported, not enforced,
    so that a re-run after a later failure gets past this step; except that a server answering another release
    fails the module (the journal does not describe what serves).
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.haproxy
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the journal, the lock, HAProxy and every server's C(/version) and fails as a real run would; takes
      no lock, flips nothing, writes nothing.
  diff_mode:
    support: full
    details: The key's colour in the runtime map (and in the map file on disk when it differs).
  platform:
    platforms: posix
options:
  environment:
    description:
      - The environment to roll back (letters, digits, C(_) and C(-)), for example C(production).
    type: str
    required: true
  journal_dir:
    description:
      - The deploy journal directory on this host (the deploy_journal role's C(deploy_journal_dir)); the record read is
        C(JOURNAL_DIR/ENVIRONMENT/last-deploy.json).
    type: path
    required: true
  key:
    description:
      - The map key that routes the environment; defaults to O(environment).
    type: str
  allowed_colours:
    description:
      - The colours a journal record may name; anything else fails before anything is changed.
    type: list
    elements: str
    default: [blue, green]
  http_timeout:
    description:
      - Seconds each server gets to answer C(GET /version) (more than 0, at most 30). The servers are asked in parallel.
    type: float
    default: 2.0
  lock:
    description:
      - Take (or renew) the deploy lock. V(false) leaves the lock alone, for the second and further load balancers
        of an environment, whose lock lives on the first one; call the module there first, with V(true).
    type: bool
    default: true
  lock_path:
    description:
      - The deploy lock file; defaults to C(JOURNAL_DIR/ENVIRONMENT/deploy.lock), where the deploy_lock role keeps it.
    type: path
  token:
    description:
      - The token of a deploy lock this run already holds (returned by M(payments.deploy.deploy_lock) or by this
        module); the lock is then renewed instead of taken, and never released by this module.
      - Fails, changing nothing, when the token no longer holds the lock.
    type: str
  holder:
    description:
      - Who takes the lock, as for M(payments.deploy.deploy_lock) (keys C(user), C(controller), C(playbook),
        C(operation) shown first; plain string values).
    type: dict
    default: {}
  phase:
    description:
      - The phase recorded in the lock when it is taken or renewed.
    type: str
  lease_seconds:
    description:
      - How long the lock holds without being renewed (1 to 86400).
    type: int
    default: 900
notes:
  - The servers' C(/version) is asked from the load balancer host, over the same network path HAProxy uses.
  - Only the Python standard library is needed on the target host.
seealso:
  - module: payments.deploy.haproxy_switch
  - module: payments.deploy.deploy_lock
  - name: The rollback switch
    description: What the module checks, why, and how long it takes.
    link: https://github.com/payments-platform/payments.deploy/blob/main/docs/rollback-switch.md
"""

EXAMPLES = r"""
- name: Flip production back to the colour and release that served before the last deploy
  payments.deploy.rollback_switch:
    environment: production
    journal_dir: /var/lib/payments/journal
    admin_socket: /run/haproxy/admin.sock
    map_file: /etc/haproxy/colours.map
    holder:
      user: alice
      controller: ctl-1
      playbook: rollback.yml
      operation: rollback
    phase: switch back
  register: rollback

- name: Keep the lock's token for the later plays (renew, release)
  ansible.builtin.set_fact:
    deploy_lock_token: "{{ rollback.token }}"
  when: rollback.token is not none

- name: Flip back holding a lock taken earlier in the run
  payments.deploy.rollback_switch:
    environment: staging
    journal_dir: /var/lib/payments/journal
    admin_socket: /run/haproxy/admin.sock
    map_file: /etc/haproxy/colours.map
    token: "{{ deploy_lock_token }}"
    http_timeout: 1.5

- name: Flip the other load balancers too (their lock is the one on the first, held above)
  payments.deploy.rollback_switch:
    environment: production
    journal_dir: /var/lib/payments/journal
    admin_socket: /run/haproxy/admin.sock
    map_file: /etc/haproxy/colours.map
    lock: false
  when: inventory_hostname != groups['loadbalancers'] | first
"""

RETURN = r"""
msg:
  description: What was done, or why nothing was.
  returned: always
  type: str
  sample: "production: switched back from green (1.1.0) to blue (1.0.0); app1, app2 UP and answering 1.0.0"
environment:
  description: O(environment).
  returned: always
  type: str
  sample: production
colour_from:
  description: The colour HAProxy routed the environment to before this call (V(null) when the key was not in the map).
  returned: success
  type: str
  sample: green
colour_to:
  description:
    - The colour the environment routes to now (in check mode, would route to), the last deploy's C(colour_from).
  returned: success
  type: str
  sample: blue
release_from:
  description: The release RV(colour_from) runs according to the journal; V(null) when it is neither journal colour.
  returned: success
  type: str
  sample: 1.1.0
release_to:
  description: The release RV(colour_to) runs, checked on every server.
  returned: success
  type: str
  sample: 1.0.0
already_rolled_back:
  description: Whether HAProxy already routed the environment to RV(colour_to); the checks were then not enforced.
  returned: success
  type: bool
switched_at:
  description: Epoch seconds right after HAProxy accepted the runtime change; V(null) when it did not change.
  returned: success
  type: float
  sample: 1767225600.123
persisted:
  description: Whether the map file on disk routes the environment to RV(colour_to) after this call.
  returned: success
  type: bool
backend:
  description: The backend of RV(colour_to).
  returned: when the journal was read
  type: str
  sample: production_blue
servers:
  description:
    - Each server of RV(backend) as checked. C(status) and C(check_status) from C(show stat), C(addr) where it was
      asked, C(version) and C(colour) from its C(/version), C(error) when it did not answer usefully, C(ok).
  returned: when HAProxy was read
  type: dict
  sample: {"app1": {"status": "UP", "check_status": "L7OK", "addr": "10.0.1.11:8081", "version": "1.0.0",
           "colour": "blue", "error": null, "ok": true}}
problems:
  description: Why the colour cannot take traffic back (empty when it can).
  returned: when HAProxy was read
  type: list
  elements: str
shared_outage:
  description:
    - Whether no server of the live colour was C(UP) in HAProxy either. A server of RV(colour_to) that is not C(UP)
      then does not stop the flip (a warning names it); the cause is shared by both colours (PostgreSQL, say), and
      flipping back cannot make things worse. Its C(/version) must still answer the release to go back to.
  returned: when HAProxy was read
  type: bool
journal_record:
  description: The journal record acted on (the last deploy, as written by the deploy_journal role).
  returned: when the journal was read
  type: dict
journal_file:
  description: The path of RV(journal_record).
  returned: when the journal was read
  type: str
unfinished:
  description:
    - Whether RV(journal_record) is an unfinished switch (C(switch-intent.json), left by a run killed between its flip
      and its journal record) rather than C(last-deploy.json). The module does not remove it; the deploy_journal
      role's C(settle) does.
  returned: when the journal was read
  type: bool
token:
  description:
    - The token of the deploy lock this call took, for later renewals and the release.
    - V(null) when O(token) was given (keep using it), in check mode, and when the lock was released on failure.
  returned: always
  type: str
lock:
  description: The deploy lock as it is now (without its token); on a refusal, the lock found.
  returned: when the lock was read (O(lock=true))
  type: dict
commands:
  description: The runtime API commands sent, in order.
  returned: always
  type: list
  elements: str
  sample: ["show map /etc/haproxy/colours.map", "show stat", "set map /etc/haproxy/colours.map production blue",
           "show map /etc/haproxy/colours.map"]
timings_ms:
  description: Milliseconds spent in each step (C(journal), C(lock), C(checks), C(flip)) and in all (C(total)).
  returned: always
  type: dict
  sample: {"journal": 0.2, "lock": 0.6, "checks": 4.1, "flip": 1.3, "total": 6.4}
"""

import os
import stat
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils import _lease
from ansible_collections.payments.deploy.plugins.module_utils._haproxy import (
    UP,
    HAProxyRuntime,
    HAProxyRuntimeError,
    MapFlipError,
    backend_name,
    backend_rows,
    check_map_path,
    check_name,
    flip_runtime_value,
    haproxy_argument_spec,
    haproxy_option_problems,
    parse_map_text,
    persist_map_value,
    read_map_file,
    restore_runtime_value,
    runtime_value_problem,
)
from ansible_collections.payments.deploy.plugins.module_utils._numbers import number_problem
from ansible_collections.payments.deploy.plugins.module_utils._rollback_checks import ask_versions, judge
from ansible_collections.payments.deploy.plugins.module_utils._rollback_plan import (
    Plan,
    PlanError,
    default_lock_path,
    load_plan,
)

MAX_HTTP_TIMEOUT = 30.0


def input_problems(params: dict[str, t.Any]) -> list[str]:
    """Every problem with the inputs at once, before anything is read or changed."""
    problems = _lease.input_problems(params["environment"], "present", params["lease_seconds"], params["token"], False,
                                     None, params["holder"])
    for name in ("journal_dir", "admin_socket", "map_file", "lock_path"):
        value = params[name]
        if value is not None and not value.startswith("/"):
            problems.append(f"{name} {value!r} must be an absolute path")
    problems += [p for p in (check_name("key", params["key"]), check_map_path(params["map_file"])) if p]
    if not params["allowed_colours"]:
        problems.append("allowed_colours must name at least one colour")
    problems += [p for p in (check_name("colour", c) for c in params["allowed_colours"]) if p]
    problems += [p for p in (number_problem("http_timeout", params["http_timeout"], maximum=MAX_HTTP_TIMEOUT),) if p]
    problems += haproxy_option_problems(params)
    if params["token"] is not None and not params["lock"]:
        problems.append("token only applies with lock=true")
    if params["lock_path"] is not None and params["lock_path"].endswith("/"):
        problems.append(f"lock_path {params['lock_path']!r} must name a file, not a directory")
    if params["admin_socket"].startswith("/"):
        try:
            is_socket = stat.S_ISSOCK(os.stat(params["admin_socket"]).st_mode)
        except OSError as exc:
            problems.append(f"admin_socket {params['admin_socket']}: {exc.strerror} (is HAProxy running here?)")
        else:
            if not is_socket:
                problems.append(f"admin_socket {params['admin_socket']} is not a unix socket")
    return problems


class RollbackSwitch:
    """One call: lock, journal, checks, flip; nothing changes until every check has passed."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.environment: str = self.params["environment"]
        self.key: str = self.params["key"]
        self.map_file: str = self.params["map_file"]
        self.runtime = HAProxyRuntime(self.params["admin_socket"], timeout=self.params["socket_timeout"])
        self.lock_path: str = (self.params["lock_path"]
                               or default_lock_path(self.params["journal_dir"], self.environment))
        self.token: str | None = None  # the token of a lock this call took
        self.result: dict[str, t.Any] = {}

    # --- bookkeeping ---------------------------------------------------------------------------------------

    def timed(self, step: str, since: float) -> None:
        self.timings[step] = round(self.timings.get(step, 0.0) + (time.perf_counter() - since) * 1000, 1)

    def finish(self) -> dict[str, t.Any]:
        self.timings["total"] = round((time.perf_counter() - self.started) * 1000, 1)
        return {"environment": self.environment, "commands": self.runtime.commands, "timings_ms": self.timings,
                "token": self.token, **self.result}

    def fail(self, msg: str, changed_nothing: bool = True) -> t.NoReturn:
        """Fail; a lock this call took is released when nothing was changed (holding it would only block a re-run)."""
        if self.token is not None and changed_nothing:
            try:
                _lease.release(self.lock_path, environment=self.environment, token=self.token)
                msg += f". The deploy lock of {self.environment} this call took was released"
                self.token = None
                self.result["lock"] = None
            except _lease.LeaseError as exc:
                msg += f". Releasing the deploy lock this call took failed too ({exc}): release it with its token"
        self.module.fail_json(msg=msg, **self.finish())

    # --- steps ---------------------------------------------------------------------------------------------

    def read_plan(self) -> Plan:
        since = time.perf_counter()
        try:
            plan = load_plan(self.params["journal_dir"], self.environment, self.params["allowed_colours"])
        except PlanError as exc:
            self.fail(f"{exc}; nothing was changed")
        self.timed("journal", since)
        self.result.update(journal_record=plan.record, journal_file=plan.path, unfinished=plan.unfinished,
                           colour_to=plan.colour_back, release_to=plan.release_back)
        return plan

    def take_lock(self) -> None:
        since = time.perf_counter()
        params = self.params
        try:
            outcome = _lease.acquire(self.lock_path, environment=self.environment,
                                     holder=_lease.clean_holder(params["holder"]),
                                     lease_seconds=params["lease_seconds"],
                                     phase=params["phase"], token=params["token"], check=self.module.check_mode)
        except (_lease.LockHeld, _lease.LockLost) as exc:
            self.result["lock"] = _lease.public(exc.lock)
            self.fail(f"{exc} Nothing was changed")
        except _lease.LeaseError as exc:
            self.fail(f"{exc}. Nothing was changed; {_lease.unlock_command(self.environment)} releases it by force")
        if outcome.taken_over is not None:
            self.module.warn(outcome.msg)
        self.result["lock"] = _lease.public(outcome.lock)
        if outcome.acquired and not self.module.check_mode:
            self.token = outcome.lock["token"] if outcome.lock else None
        self.timed("lock", since)

    def read_haproxy(self, backend: str) -> tuple[dict[str, str], str | None, list[dict[str, str]]]:
        """The runtime map, the map file's text (None when missing), and show stat's rows."""
        try:
            runtime_map = self.runtime.show_map(self.map_file)
            stat_rows = self.runtime.show_stat()
        except HAProxyRuntimeError as exc:
            self.fail(f"cannot read HAProxy's state, nothing was changed: {exc.describe()}")
        if backend_rows(stat_rows, backend) is None:
            self.fail(f"backend {backend} is not known to HAProxy (no such proxy in show stat): is "
                      f"{self.environment!r} an environment of this load balancer, and backend_template "
                      f"{self.params['backend_template']!r} right? Nothing was changed")
        try:
            file_text = read_map_file(self.map_file)
        except (OSError, UnicodeDecodeError) as exc:
            self.fail(f"cannot read map file {self.map_file} on disk ({exc}); nothing was changed")
        return runtime_map, file_text, stat_rows

    def flip(self, plan: Plan, previous: str | None, runtime_change: bool, file_change: bool,
             runtime_map: dict[str, str], file_text: str | None) -> None:
        since = time.perf_counter()
        if runtime_change:
            try:
                self.result["switched_at"] = flip_runtime_value(self.runtime, self.map_file, self.key, plan.colour_back,
                                                                previous)
            except MapFlipError as exc:
                self.fail(exc.message, changed_nothing=exc.restored)
        if file_change:
            try:
                persist_map_value(self.map_file, file_text, runtime_map, self.key, plan.colour_back)
            except (OSError, UnicodeError) as exc:
                if runtime_change:
                    restored, how = restore_runtime_value(self.runtime, self.map_file, self.key, previous)
                    self.fail(f"switched {self.key} to {plan.colour_back} at runtime but could not write map file "
                              f"{self.map_file} ({exc}); {how}", changed_nothing=restored)
                self.fail(f"could not write map file {self.map_file} ({exc}); HAProxy serves {self.key} -> "
                          f"{plan.colour_back} but a reload would route to what the file says", changed_nothing=False)
        self.result["persisted"] = True
        self.timed("flip", since)

    def run(self) -> t.NoReturn:
        plan = self.read_plan()  # a bad journal fails before the lock is touched
        if self.params["lock"]:
            self.take_lock()
            plan = self.read_plan()  # again under the lock: a deploy may have finished in between
        backend = backend_name(self.params["backend_template"], self.key, plan.colour_back)
        self.result["backend"] = backend

        since = time.perf_counter()
        runtime_map, file_text, stat_rows = self.read_haproxy(backend)
        rows = backend_rows(stat_rows, backend) or {}
        live = backend_rows(stat_rows, backend_name(self.params["backend_template"], self.key, plan.colour_live))
        # no live server UP either: an outage of something both colours share, no reason to stay
        shared_outage = bool(live) and not any(row.get("status") == UP for row in live.values())
        addrs = {name: row.get("addr", "") for name, row in rows.items()}
        servers, problems = judge(rows, ask_versions(addrs, self.params["http_timeout"]), plan.release_back,
                                  plan.colour_back, shared_outage)
        self.timed("checks", since)
        down = sorted(name for name, report in servers.items() if report["status"] != UP)
        if shared_outage and down:
            self.module.warn(f"no server of {plan.colour_live} is UP in HAProxy either (an outage both colours share, "
                             f"PostgreSQL for instance): {', '.join(down)} of {plan.colour_back} not UP does not stop "
                             "the flip back; they answer /version with the release to go back to")
        self.result["shared_outage"] = shared_outage

        previous = runtime_map.get(self.key)
        problem = runtime_value_problem(self.map_file, self.key, previous)
        if problem:
            self.fail(f"{self.environment}: refusing to switch back: {problem}")
        file_colour = parse_map_text(file_text).get(self.key) if file_text is not None else None
        already = previous == plan.colour_back
        release_from = {plan.colour_live: plan.release_live, plan.colour_back: plan.release_back}.get(previous or "")
        runtime_change = not already
        file_change = file_colour != plan.colour_back
        changed = runtime_change or file_change
        self.result.update(colour_from=previous, release_from=release_from, servers=servers, problems=problems,
                           already_rolled_back=already, switched_at=None, persisted=not file_change)
        ok_servers = ", ".join(sorted(servers))

        wrong = [f"{name} runs {report['version']}" for name, report in sorted(servers.items())
                 if report["version"] not in (None, plan.release_back)]
        if already and wrong:
            self.fail(f"{self.environment} already routes to {plan.colour_back}, but not to release {plan.release_back}"
                      f" ({', '.join(wrong)}): the journal ({plan.path}) does not describe what serves; nothing was "
                      "changed")
        if problems and not already:
            self.fail(f"{self.environment}: refusing to switch back to {plan.colour_back} ({plan.release_back}): "
                      f"{'; '.join(problems)}. Traffic still routes to {previous}; nothing was changed")
        if previous not in (plan.colour_live, plan.colour_back):
            self.module.warn(f"HAProxy routes {self.key} to {previous!r}, which is neither colour of the last deploy "
                             f"({plan.colour_live} -> {plan.colour_back} expected)")
        if already and problems:
            self.module.warn(f"{self.environment} already routes to {plan.colour_back}, but: {'; '.join(problems)}")
        if changed and self.module._diff:
            before = f"{self.key}: {previous}\n" if previous is not None else ""
            if file_colour != previous:
                before += f"{self.key} (map file on disk): {file_colour}\n"
            self.result["diff"] = {"before": before, "after": f"{self.key}: {plan.colour_back}\n",
                                   "before_header": self.map_file, "after_header": self.map_file}
        if changed and not self.module.check_mode:
            self.flip(plan, previous, runtime_change, file_change, runtime_map, file_text)

        if already:
            msg = f"{self.environment} already routes to {plan.colour_back} ({plan.release_back}): nothing to flip"
            if file_change:
                msg += f"; the map file on disk {'would be' if self.module.check_mode else 'was'} fixed"
        else:
            verb = "would switch" if self.module.check_mode else "switched"
            msg = (f"{self.environment}: {verb} back from {previous} ({release_from}) to {plan.colour_back} "
                   f"({plan.release_back}); {ok_servers} UP and answering {plan.release_back}")
        self.module.exit_json(changed=changed, msg=msg, **self.finish())


def main() -> None:
    argument_spec = haproxy_argument_spec()
    argument_spec.update(
        environment={"type": "str", "required": True},
        journal_dir={"type": "path", "required": True},
        key={"type": "str", "no_log": False},
        allowed_colours={"type": "list", "elements": "str", "default": ["blue", "green"]},
        http_timeout={"type": "float", "default": 2.0},
        lock={"type": "bool", "default": True},
        lock_path={"type": "path"},
        token={"type": "str", "no_log": True},
        holder={"type": "dict", "default": {}},
        phase={"type": "str"},
        lease_seconds={"type": "int", "default": 900},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    module.params["key"] = module.params["key"] or module.params["environment"]
    problems = input_problems(module.params)
    if problems:
        module.fail_json(msg="; ".join(problems) + "; nothing was changed", environment=module.params["environment"],
                         commands=[], token=None)
    RollbackSwitch(module).run()


if __name__ == "__main__":
    main()

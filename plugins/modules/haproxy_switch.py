#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_switch
short_description: Switch blue-green traffic atomically through an HAProxy map
version_added: 0.1.0
description:
  - Routes the traffic of one map key (for example C(production)) to one colour (for example C(green)) by changing
    the value of the key in an HAProxy map through the runtime API (C(set map), or C(add map) when the key is absent).
    A frontend whose C(use_backend) rule looks the key up in the map with the C(map) converter sends every new request,
    on new and on kept-alive connections, to the new colour from that moment on. No reload, no dropped connection.
  - Before switching it waits until every server of the target backend is C(UP) in C(show stat), and fails, changing
    nothing, when one is not.
  - After the runtime change it rewrites the map file on disk atomically, so that a reload or restart keeps the colour.
    When that write fails, the runtime value is set back and the module fails.
  - Reports a map file on disk that disagrees with the value HAProxy serves, and fixes it when O(persist=true).
  - Refuses to run, sending no command that changes anything, when HAProxy serves the key a value that is not a
    plain word (letters, digits, C(_), C(.), C(:), C(-)), since that value could not be sent back safely if the
    switch had to be undone.
  - Idempotent, with check mode and diff mode.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.haproxy
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the map and checks the health of the target backend (and fails when that gate fails), changes nothing.
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  key:
    description:
      - The map key whose traffic to route, for example C(production) or C(staging).
    type: str
    required: true
  colour:
    description:
      - The colour to route O(key) to, for example C(green).
      - Must be one of O(allowed_colours); anything else fails before anything is read or changed.
    type: str
    required: true
  allowed_colours:
    description:
      - The colours this switch may route to.
    type: list
    elements: str
    default: [blue, green]
  require_backend_up:
    description:
      - Before switching, require every server of the target backend (see O(backend_template)) to be C(UP) in C(show stat).
      - A server that is C(DOWN), in maintenance, draining, C(NOLB), in transition (C(UP 1/2)) or without health checks
        (C(no check)) is not C(UP). The module fails listing those servers and changes nothing.
      - Only applies when the runtime value has to change. A target backend that HAProxy does not know always fails.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait, polling C(show stat), for the servers of the target backend to come C(UP).
      - V(0) checks once. A finite number from V(0) to V(3600); anything else fails before anything is read.
    type: float
    default: 30.0
  persist:
    description:
      - Rewrite O(map_file) on disk after the runtime change (temporary file in the same directory, fsync, rename;
        mode and owner kept), so that a reload keeps the colour.
      - With V(false) only the runtime value changes; the next reload routes by the file again.
    type: bool
    default: true
seealso:
  - module: payments.deploy.haproxy_switch_info
  - name: HAProxy management guide, runtime API
    description: The C(set map), C(add map), C(show map) and C(show stat) commands.
    link: https://docs.haproxy.org/2.6/management.html#9.3
"""

EXAMPLES = r"""
- name: Route production to green once every green server is up
  payments.deploy.haproxy_switch:
    admin_socket: /run/haproxy/admin.sock
    map_file: /etc/haproxy/colours.map
    key: production
    colour: green
  register: switch

- name: Flip back to blue at once during a rollback, even if blue is degraded
  payments.deploy.haproxy_switch:
    admin_socket: /run/haproxy/admin.sock
    map_file: /etc/haproxy/colours.map
    key: production
    colour: "{{ switch.previous_colour }}"
    require_backend_up: false

- name: Route staging through backends named like be_staging_blue
  payments.deploy.haproxy_switch:
    admin_socket: /run/haproxy/admin.sock
    map_file: /etc/haproxy/colours.map
    key: staging
    colour: blue
    backend_template: "be_{key}_{colour}"
    wait_timeout: 60
"""

RETURN = r"""
key:
  description: The map key that was switched.
  returned: success
  type: str
  sample: production
colour:
  description: The colour the key routes to now (in check mode, would route to).
  returned: success
  type: str
  sample: green
previous_colour:
  description: The colour HAProxy served for the key before this run; V(null) when the key was not in the map.
  returned: success
  type: str
  sample: blue
map_file_colour:
  description: The colour the map file on disk held for the key before this run; V(null) when the file or the key is missing.
  returned: success
  type: str
  sample: blue
backend:
  description: The backend that O(colour) routes to.
  returned: success
  type: str
  sample: production_green
backend_servers:
  description: Status of each server of RV(backend) in C(show stat), as last read.
  returned: success
  type: dict
  sample: {"app1": "UP", "app2": "UP"}
switched_at:
  description: Epoch seconds taken right after HAProxy accepted the runtime change; V(null) when the runtime value did not change.
  returned: success
  type: float
  sample: 1767225600.123
persisted:
  description:
    - Whether the map file on disk holds O(colour) for O(key) after this run (written now or already there).
    - In check mode, whether it holds it already.
  returned: success
  type: bool
  sample: true
commands:
  description:
    - The runtime API commands sent, in order. A read repeated while polling is listed once.
    - Check mode sends no command that changes anything.
  returned: always
  type: list
  elements: str
  sample: ["show map /etc/haproxy/colours.map", "show stat", "set map /etc/haproxy/colours.map production green",
           "show map /etc/haproxy/colours.map"]
elapsed:
  description: Seconds the module took, including the wait for the backend.
  returned: always
  type: float
  sample: 0.52
"""

import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils._haproxy import (
    UP,
    HAProxyRuntime,
    HAProxyRuntimeError,
    MapFlipError,
    backend_name,
    check_map_path,
    check_name,
    haproxy_argument_spec,
    haproxy_option_problems,
    flip_runtime_value,
    parse_map_text,
    persist_map_value,
    read_map_file,
    restore_runtime_value,
    runtime_value_problem,
)
from ansible_collections.payments.deploy.plugins.module_utils._numbers import number_problem

WRITE_ERRORS = (OSError, UnicodeError)
MAX_WAIT_TIMEOUT = 3600.0


class Switch:
    """One run of the module: read, gate, change the runtime value, persist; fail closed at each step."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.started = time.monotonic()
        params = module.params
        self.key: str = params["key"]
        self.colour: str = params["colour"]
        self.map_file: str = params["map_file"]
        self.persist: bool = params["persist"]
        self.backend = self._validate()
        self.runtime = HAProxyRuntime(params["admin_socket"], timeout=params["socket_timeout"])
        self.previous: str | None = None

    def fail(self, msg: str, exc: HAProxyRuntimeError | None = None, **extra: t.Any) -> t.NoReturn:
        if exc is not None:
            msg = f"{msg}: {exc.describe()}"
            extra.update(command=exc.command, answer=exc.answer)
        self.module.fail_json(msg=msg, key=self.key, colour=self.colour, backend=self.backend, previous_colour=self.previous,
                              commands=self.runtime.commands, elapsed=self.elapsed(), **extra)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def _validate(self) -> str:
        """Every input problem at once, before anything is read or changed; returns the target backend."""
        params = self.module.params
        problems = [p for p in (check_name("key", self.key), check_name("colour", self.colour), check_map_path(self.map_file)) if p]
        if self.colour not in params["allowed_colours"]:
            problems.append(f"colour {self.colour!r} is not one of allowed_colours {params['allowed_colours']}")
        problems += haproxy_option_problems(params)
        problems += [p for p in (number_problem("wait_timeout", params["wait_timeout"], maximum=MAX_WAIT_TIMEOUT,
                                                allow_minimum=True),) if p]
        backend = ""
        if not problems:
            backend = backend_name(params["backend_template"], self.key, self.colour)
        if problems:
            self.module.fail_json(msg="; ".join(problems), commands=[])
        return backend

    def read_state(self) -> tuple[dict[str, str], str | None]:
        """The runtime map, and the text of the map file on disk (None when it does not exist)."""
        try:
            runtime_map = self.runtime.show_map(self.map_file)
        except HAProxyRuntimeError as exc:
            self.fail(f"cannot read map {self.map_file} from HAProxy", exc)
        self.previous = runtime_map.get(self.key)
        problem = runtime_value_problem(self.map_file, self.key, self.previous)
        if problem:
            self.fail(f"refusing to switch {self.key}: {problem}")
        try:
            return runtime_map, read_map_file(self.map_file)
        except (OSError, UnicodeDecodeError) as exc:
            self.fail(f"cannot read map file {self.map_file} on disk: {exc}")

    def gate(self, runtime_change: bool) -> dict[str, str]:
        """Status of the target backend's servers; when switching, wait for all of them to be UP or fail."""
        params = self.module.params
        deadline = time.monotonic() + params["wait_timeout"]
        gated = runtime_change and params["require_backend_up"]
        try:
            while True:
                servers = self.runtime.backend_servers(self.backend)
                if servers is None:
                    if not runtime_change:
                        return {}
                    self.fail(f"backend {self.backend} is not known to HAProxy (no such proxy in show stat); nothing changed")
                if not gated or (servers and all(status == UP for status in servers.values())):
                    return servers
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(0.5, remaining))
        except HAProxyRuntimeError as exc:
            self.fail("cannot read backend health from HAProxy", exc)
        not_up = {name: status for name, status in servers.items() if status != UP}
        reason = f"servers not UP: {not_up}" if servers else "it has no servers"
        self.fail(f"backend {self.backend} is not ready after waiting {params['wait_timeout']}s, {reason}; "
                  f"{self.key} still routes to {self.previous}, nothing changed", backend_servers=servers)

    def change_runtime(self) -> float:
        """Set (or add) the key in the runtime map, check HAProxy serves it, return when it took effect."""
        try:
            return flip_runtime_value(self.runtime, self.map_file, self.key, self.colour, self.previous)
        except MapFlipError as exc:
            extra = {"command": exc.cause.command, "answer": exc.cause.answer} if exc.cause else {}
            self.fail(exc.message, **extra)

    def rollback(self) -> str:
        """Put the runtime value back as it was; return a sentence saying whether that worked."""
        return restore_runtime_value(self.runtime, self.map_file, self.key, self.previous)[1]

    def diff(self, file_colour: str | None) -> dict[str, str]:
        before = f"{self.key}: {self.previous}\n" if self.previous is not None else ""
        after = f"{self.key}: {self.colour}\n"
        if file_colour != self.previous:
            before += f"{self.key} (map file on disk): {file_colour}\n"
            if not self.persist:
                after += f"{self.key} (map file on disk): {file_colour}\n"
        return {"before": before, "after": after, "before_header": self.map_file, "after_header": self.map_file}

    def run(self) -> t.NoReturn:
        runtime_map, file_text = self.read_state()
        file_colour = parse_map_text(file_text).get(self.key) if file_text is not None else None
        if file_colour != self.previous:
            where = "does not exist" if file_text is None else f"routes {self.key!r} to {file_colour!r}"
            self.module.warn(
                f"map file {self.map_file} on disk {where} but HAProxy serves {self.previous!r}: "
                + ("the file will be rewritten" if self.persist else "a reload would change the routing (persist=false leaves the file as it is)")
            )
        runtime_change = self.previous != self.colour
        file_change = self.persist and file_colour != self.colour
        servers = self.gate(runtime_change)

        changed = runtime_change or file_change
        result: dict[str, t.Any] = {
            "changed": changed, "key": self.key, "colour": self.colour, "previous_colour": self.previous,
            "map_file_colour": file_colour, "backend": self.backend, "backend_servers": servers,
            "switched_at": None, "persisted": file_colour == self.colour,
        }
        if changed and self.module._diff:
            result["diff"] = self.diff(file_colour)

        if changed and not self.module.check_mode:
            if runtime_change:
                result["switched_at"] = self.change_runtime()
            if file_change:
                try:
                    persist_map_value(self.map_file, file_text, runtime_map, self.key, self.colour)
                except WRITE_ERRORS as exc:
                    if runtime_change:
                        self.fail(f"switched {self.key} to {self.colour} at runtime but could not write map file {self.map_file} "
                                  f"({exc}); {self.rollback()}")
                    self.fail(f"could not write map file {self.map_file} ({exc}); HAProxy serves {self.key} -> {self.colour} "
                              f"but a reload would route to {file_colour}")
                result["persisted"] = True

        self.module.exit_json(commands=self.runtime.commands, elapsed=self.elapsed(), **result)


def main() -> None:
    argument_spec = haproxy_argument_spec()
    argument_spec.update(
        key={"type": "str", "required": True, "no_log": False},
        colour={"type": "str", "required": True},
        allowed_colours={"type": "list", "elements": "str", "default": ["blue", "green"]},
        require_backend_up={"type": "bool", "default": True},
        wait_timeout={"type": "float", "default": 30.0},
        persist={"type": "bool", "default": True},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    Switch(module).run()


if __name__ == "__main__":
    main()

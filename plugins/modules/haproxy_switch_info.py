#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_switch_info
short_description: Show which colour each HAProxy map key routes to, and the health of every colour
version_added: 0.1.0
description:
  - Reads the routing map from the HAProxy runtime API (C(show map)) and the map file on disk, and the status of the
    servers of every colour backend of each key from C(show stat).
  - Read-only; the counterpart of M(payments.deploy.haproxy_switch).
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - payments.deploy.haproxy
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  key:
    description:
      - The map key to report, for example C(production). All keys of the map when omitted.
    type: str
seealso:
  - module: payments.deploy.haproxy_switch
"""

EXAMPLES = r"""
- name: Which colour serves production, and is the idle colour healthy?
  payments.deploy.haproxy_switch_info:
    admin_socket: /run/haproxy/admin.sock
    map_file: /etc/haproxy/colours.map
    key: production
  register: lb

- name: Show the live colour
  ansible.builtin.debug:
    msg: "production is on {{ lb.colours.production }}, servers {{ lb.backends.production[lb.colours.production].servers }}"
"""

RETURN = r"""
colours:
  description: Colour each key routes to, as HAProxy serves it now (the runtime map).
  returned: success
  type: dict
  sample: {"production": "blue", "staging": "green"}
file_colours:
  description: Colour each key routes to in the map file on disk, which a reload would load. Empty when the file is missing.
  returned: success
  type: dict
  sample: {"production": "blue", "staging": "green"}
in_sync:
  description: Whether the map file on disk agrees with the runtime map for the keys reported.
  returned: success
  type: bool
  sample: true
backends:
  description:
    - For each key, the colours found among the backends named by O(backend_template) (C(production_blue), C(production_green)),
      each with its backend name, the status of each server, and whether all of them are C(UP).
    - A colour is found only when it has no C(_) in its name, so C(production_eu_blue) is not a colour of C(production).
  returned: success
  type: dict
  sample:
    production:
      blue: {"backend": "production_blue", "servers": {"app1": "UP", "app2": "UP"}, "all_up": true}
      green: {"backend": "production_green", "servers": {"app1": "DOWN", "app2": "UP"}, "all_up": false}
commands:
  description: The runtime API commands sent.
  returned: always
  type: list
  elements: str
  sample: ["show map /etc/haproxy/colours.map", "show stat"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils._haproxy import (
    UP,
    HAProxyRuntime,
    HAProxyRuntimeError,
    backend_pattern,
    check_map_path,
    check_name,
    haproxy_argument_spec,
    haproxy_option_problems,
    parse_map_text,
    read_map_file,
)


def main() -> None:
    argument_spec = haproxy_argument_spec()
    argument_spec.update(key={"type": "str", "no_log": False})
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    map_file, key = params["map_file"], params["key"]

    problems = [p for p in (check_map_path(map_file), check_name("key", key) if key is not None else None) if p]
    problems += haproxy_option_problems(params)
    if problems:
        module.fail_json(msg="; ".join(problems), commands=[])

    runtime = HAProxyRuntime(params["admin_socket"], timeout=params["socket_timeout"])
    try:
        colours = runtime.show_map(map_file)
        rows = runtime.show_stat()
    except HAProxyRuntimeError as exc:
        module.fail_json(msg=f"cannot read HAProxy state: {exc.describe()}", command=exc.command, answer=exc.answer,
                         commands=runtime.commands)

    try:
        file_text = read_map_file(map_file)
    except (OSError, UnicodeDecodeError) as exc:
        module.fail_json(msg=f"cannot read map file {map_file} on disk: {exc}", commands=runtime.commands)
    file_colours = parse_map_text(file_text) if file_text is not None else {}

    keys = [key] if key is not None else list(colours)
    patterns = {k: backend_pattern(params["backend_template"], k) for k in keys}
    if key is None:
        colours_out = colours
        file_out = file_colours
    else:
        colours_out = {key: colours[key]} if key in colours else {}
        file_out = {key: file_colours[key]} if key in file_colours else {}

    servers: dict[str, dict[str, dict[str, str]]] = {k: {} for k in keys}
    names: dict[tuple[str, str], str] = {}
    for row in rows:
        svname, pxname = row.get("svname", ""), row.get("pxname", "")
        # the most specific key wins: production_eu_blue belongs to production_eu, not to production
        matches = [(m.group("colour"), k) for k in keys if (m := patterns[k].match(pxname))]
        if not matches:
            continue
        colour, k = min(matches, key=lambda item: len(item[0]))
        found = servers[k].setdefault(colour, {})
        names[(k, colour)] = pxname
        if svname not in ("FRONTEND", "BACKEND"):
            found[svname] = row.get("status", "")
    backends = {
        k: {
            colour: {
                "backend": names[(k, colour)],
                "servers": status,
                "all_up": bool(status) and all(value == UP for value in status.values()),
            }
            for colour, status in per_key.items()
        }
        for k, per_key in servers.items()
    }
    sync_keys = set(keys) if key is not None else set(colours) | set(file_colours)

    module.exit_json(
        changed=False,
        colours=colours_out,
        file_colours=file_out,
        in_sync=all(colours.get(k) == file_colours.get(k) for k in sync_keys),
        backends=backends,
        commands=runtime.commands,
    )


if __name__ == "__main__":
    main()

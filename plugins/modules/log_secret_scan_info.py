#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: log_secret_scan_info
short_description: Look for secret values and card numbers in the last lines of log files
version_added: 0.4.0
description:
  - Reads the last O(lines) lines of each file of O(paths) (backwards, block by block, so a large log costs the memory
    of its tail only) and reports every line that holds one of O(secrets) or a card number.
  - A secret is found as it is, percent-encoded, and for a URL (C(DATABASE_URL), C(REDIS_URL)) by its password alone.
  - A card number is 13 to 19 digits, in one run or in the groupings cards are printed in (4-4-4-4, 4-6-5, 4-6-4, with
    spaces or dashes), starting with 1 to 6, that passes the Luhn check. Parts of UUIDs and plain runs that read as an
    epoch time in milliseconds, microseconds or nanoseconds (within 25 years before and 2 years after the scan) are
    not card numbers. Stripe's test cards are card numbers.
  - Findings name the file, the line number and the kind (the secret's name, or C(card number ending 4242)); never a
    value. The module does not fail on findings; it fails when a file cannot be read.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  paths:
    description: The log files to scan; each must exist and be a regular file.
    type: list
    elements: path
    required: true
  lines:
    description: How many lines to scan at the end of each file.
    type: int
    default: 2000
  max_bytes:
    description: The most bytes read at the end of each file (a bound on memory when lines are very long).
    type: int
    default: 67108864
  secrets:
    description:
      - The values that must never appear, each with the C(name) a finding reports. Values shorter than 8 characters
        are refused (they would match by chance).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The name a finding reports (for example C(STRIPE_SECRET_KEY)).
        type: str
        required: true
      value:
        description: The secret value.
        type: str
        required: true
  card_numbers:
    description: Whether to look for card numbers.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Scan the new colour's log for secrets and card numbers
  payments.deploy.log_secret_scan_info:
    paths: [/var/log/payments/payment-service-green.log]
    lines: 2000
    secrets:
      - {name: STRIPE_SECRET_KEY, value: "{{ payments_env.STRIPE_SECRET_KEY }}"}
      - {name: DATABASE_URL, value: "{{ payments_env.DATABASE_URL }}"}
  register: log_scan
"""

RETURN = r"""
findings:
  description: Every hit, by file and line; C(kind) is a secret's name (or C(NAME password) for a URL's password) or
    C(card number ending NNNN).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/var/log/payments/payment-service-green.log", "line": 1234, "kind": "card number ending 4242"}]
passed:
  description: Whether nothing was found.
  returned: always
  type: bool
scanned:
  description: Each file with the number of its first scanned line and how many lines were scanned.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/var/log/payments/payment-service-green.log", "first_line": 8001, "lines": 2000}]
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils import _log_scan as scan_lib

SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .-]{0,63}\Z")


def option_problems(params: dict) -> list[str]:
    problems = []
    if not params["paths"]:
        problems.append("paths must name at least one log file")
    if params["lines"] < 1 or params["lines"] > 1_000_000:
        problems.append("lines must be from 1 to 1000000")
    if params["max_bytes"] < 4096 or params["max_bytes"] > 1 << 32:
        problems.append("max_bytes must be from 4096 to 4294967296")
    for index, secret in enumerate(params["secrets"]):
        if not SECRET_NAME.match(secret["name"]):
            problems.append(f"secrets[{index}].name must be a variable name (letters, digits, '_', at most 64)")
        elif len(secret["value"]) < scan_lib.MIN_SECRET_LENGTH:
            problems.append(f"secrets[{index}] ({secret['name']}) is shorter than {scan_lib.MIN_SECRET_LENGTH} characters")
    return problems


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "path", "required": True},
            "lines": {"type": "int", "default": 2000},
            "max_bytes": {"type": "int", "default": 67108864},
            # Only the values are secret: no_log on the list would mask the names that findings report.
            "secrets": {"type": "list", "elements": "dict", "default": [], "no_log": False,
                        "options": {"name": {"type": "str", "required": True},
                                    "value": {"type": "str", "required": True, "no_log": True}}},
            "card_numbers": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    problems = option_problems(params)
    if problems:
        module.fail_json(msg="; ".join(problems))
    needles = [needle for secret in params["secrets"] for needle in scan_lib.secret_needles(secret["name"], secret["value"])]
    scanned, findings = [], []
    try:
        for path in params["paths"]:
            summary, found = scan_lib.scan_file(path, params["lines"], params["max_bytes"], needles, params["card_numbers"])
            scanned.append(summary)
            findings += found
    except scan_lib.LogScanError as exc:
        module.fail_json(msg=str(exc), scanned=scanned)
    module.exit_json(changed=False, findings=findings, passed=not findings, scanned=scanned)


if __name__ == "__main__":
    main()

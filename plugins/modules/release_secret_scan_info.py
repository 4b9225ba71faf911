#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_secret_scan_info
short_description: Look for secret values and key-shaped tokens in the files of an installed release
version_added: 0.5.0
description:
  - Reads every regular file below O(path) (an installed release, for example C(/opt/payments/releases/1.1.0)) and
    reports every line that holds one of O(secrets) or, with O(patterns), a token shaped like a key, so that a release
    whose code carries a secret (instead of reading it from the environment) is caught.
  - A secret is found as it is, percent-encoded, and for a URL (C(DATABASE_URL), C(REDIS_URL)) by its password alone
    (as written in the URL and decoded).
  - The key shapes are Stripe secret and restricted keys (C(sk_live_), C(sk_test_), C(rk_live_), C(rk_test_)) and
    webhook signing secrets (C(whsec_)), each followed by at least 16 letters and digits, and PEM private keys (a
    C(-----BEGIN ... PRIVATE KEY-----) header followed by key material on the next line, or after a written C(\n)).
    A prefix or a header alone, as code that checks a key's prefix holds it, is not a finding.
  - Files are read as bytes, so binary files are scanned too. Files larger than O(max_file_bytes) are not read and are
    listed in RV(skipped_files), as are FIFOs, sockets and devices (never opened) and symbolic links that leave the
    tree or lead nowhere (never followed). A link to a file inside the tree is not followed either, since that file is
    scanned under its own path.
  - Findings name the file (relative to O(path)), the line and the kind (the secret's name, or the key shape); never a
    value. The module does not fail on findings, nor on skipped files; it fails on bad options, on a tree of more than
    O(max_files) files and on a directory or file it cannot read.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  path:
    description:
      - The absolute path of the release directory. A symbolic link to a directory (C(/opt/payments/current)) is
        resolved first; links below it are not followed.
    type: path
    required: true
  secrets:
    description:
      - The values that must not appear in the release, by the name a finding reports (for example C(STRIPE_SECRET_KEY)).
        Names are letters, digits, C(_), C(.), C(-) and spaces (at most 64); values are strings of at least 8 characters
        (shorter ones would match by chance).
      - Every value given here is masked in the module's output; the names are not.
    type: dict
    default: {}
  patterns:
    description: Whether to look for key-shaped tokens (Stripe keys, webhook signing secrets, PEM private keys).
    type: bool
    default: true
  max_file_bytes:
    description: The largest file read, in bytes (at most 256 MiB); a larger one is listed in RV(skipped_files).
    type: int
    default: 5242880
  max_files:
    description:
      - The most files (every entry that is not a directory, outside O(exclude)) the tree may hold. The tree is listed
        before any file is read; with more, the module fails and reads nothing.
    type: int
    default: 20000
  exclude:
    description:
      - Glob patterns of what not to scan, matched against the path relative to O(path) with C(/) between components.
      - C(*) and C(?) stay within one component, C(**) crosses components (C(**/) matches no component too), C([...]) is
        a class of characters. A pattern without C(/) matches a name at any depth. A directory that matches is left out
        with everything below it.
      - The default leaves out compiled Python (C(__pycache__) directories, C(*.pyc), C(*.pyo)), whose source is
        scanned. A release that ships compiled files without their source must set O(exclude=[]).
    type: list
    elements: str
    default: ["**/__pycache__/**", "*.pyc", "*.pyo"]
seealso:
  - module: payments.deploy.log_secret_scan_info
"""

EXAMPLES = r"""
- name: Look for the environment's secrets and for keys in the code of the release
  payments.deploy.release_secret_scan_info:
    path: /opt/payments/releases/1.1.0
    secrets:
      STRIPE_SECRET_KEY: "{{ payments_env.STRIPE_SECRET_KEY }}"
      STRIPE_WEBHOOK_SECRET: "{{ payments_env.STRIPE_WEBHOOK_SECRET }}"
      ENCRYPTION_KEY: "{{ payments_env.ENCRYPTION_KEY }}"
      HASH_SALT: "{{ payments_env.HASH_SALT }}"
      DATABASE_URL: "{{ payments_env.DATABASE_URL }}"
      REDIS_URL: "{{ payments_env.REDIS_URL }}"
  register: release_scan

- name: Refuse a release that carries a secret
  ansible.builtin.fail:
    msg: "{{ release_scan.findings | map(attribute='path') | unique | join(', ') }} hold secrets; the values are not shown."
  when: not release_scan.passed

- name: Scan only for key shapes, leaving the test data out
  payments.deploy.release_secret_scan_info:
    path: /opt/payments/current
    exclude: ["**/__pycache__/**", "*.pyc", "tests/fixtures/**"]
  register: release_keys
"""

RETURN = r"""
passed:
  description: Whether nothing was found. Files that were not read (RV(skipped_files)) do not change it.
  returned: always
  type: bool
  sample: false
findings:
  description:
    - Every hit, by file (relative to O(path)) and line (where the hit starts; lines end at each newline byte, in
      binary files too). Each kind is reported once per line.
    - C(kind) is a secret's name (C(NAME password) for a URL's password), or one of C(Stripe live secret key),
      C(Stripe test secret key), C(Stripe live restricted key), C(Stripe test restricted key),
      C(Stripe webhook signing secret), C(PEM private key).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "payment_service/settings.py", "line": 12, "kind": "STRIPE_SECRET_KEY"},
           {"path": "deploy/tls/server.key", "line": 1, "kind": "PEM private key"}]
files:
  description: How many files were read.
  returned: always
  type: int
  sample: 412
bytes:
  description: How many bytes were read.
  returned: always
  type: int
  sample: 3817290
skipped_files:
  description:
    - What was not read, by path relative to O(path), with the reason.
    - Not called C(skipped), which Ansible reads as the task having been skipped.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "static/app.bundle.js.map", "reason": "7340032 bytes, larger than max_file_bytes (5242880)"},
           {"path": "config/ca.pem", "reason": "symbolic link leaving the tree (not followed)"}]
excluded:
  description: How many files and directories O(exclude) left out (a directory counts once, with everything below it).
  returned: always
  type: int
  sample: 37
directory:
  description: The directory scanned (O(path) with its symbolic links resolved).
  returned: always
  type: str
  sample: /opt/payments/releases/1.1.0
seconds:
  description: How long the scan took.
  returned: always
  type: float
  sample: 0.84
"""

import copy
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils import _release_secret_scan as scan_lib

DEFAULTS = {
    "secrets": {},
    "patterns": True,
    "max_file_bytes": scan_lib.DEFAULT_MAX_FILE_BYTES,
    "max_files": scan_lib.DEFAULT_MAX_FILES,
    "exclude": scan_lib.DEFAULT_EXCLUDE,
}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            # no_log masks the values only: the names, which findings report, stay readable.
            "secrets": {"type": "dict", "default": {}, "no_log": True},
            "patterns": {"type": "bool", "default": True},
            "max_file_bytes": {"type": "int", "default": scan_lib.DEFAULT_MAX_FILE_BYTES},
            "max_files": {"type": "int", "default": scan_lib.DEFAULT_MAX_FILES},
            "exclude": {"type": "list", "elements": "str", "default": list(scan_lib.DEFAULT_EXCLUDE)},
        },
        supports_check_mode=True,
    )
    params = dict(module.params)
    for name, default in DEFAULTS.items():
        if params[name] is None:  # an option set to null takes its default
            params[name] = copy.deepcopy(default)
    problems = scan_lib.option_problems(params)
    if not problems:
        problem = scan_lib.root_problem(params["path"])
        problems = [problem] if problem else []
    if problems:
        module.fail_json(msg="; ".join(problems))
    started = time.monotonic()
    try:
        result = scan_lib.scan_tree(params["path"], params["secrets"], params["patterns"], params["exclude"],
                                    params["max_files"], params["max_file_bytes"])
    except scan_lib.ScanError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, passed=not result["findings"], seconds=round(time.monotonic() - started, 3), **result)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: secret_quality_info
short_description: Judge the strength of a payment service's secrets without showing them
version_added: 0.3.0
description:
  - Reads a service's environment (O(env), never logged) and returns a verdict per variable, never a value nor a part
    of one.
  - C(HASH_SALT) holds at least O(min_salt_bytes) bytes of randomness (hex and base64 are decoded first; other text
    counts a byte a character), is no known default or placeholder, and differs from the other environments' salts
    (compared as sha256 digests, O(other_hash_salt_sha256)).
  - C(DATABASE_URL) and C(REDIS_URL) carry no image default credentials (postgres/postgres, a Redis without a password);
    under O(strict) their passwords have at least O(min_password_length) characters, PostgreSQL verifies the server's
    certificate (C(sslmode) C(verify-full) or C(verify-ca)) and Redis is reached over TLS (C(rediss://)).
  - C(STRIPE_WEBHOOK_SECRET) is set and starts with C(whsec_).
  - Read-only. It does not fail on a weak secret; it returns every problem in RV(problems).
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  env:
    description:
      - The service's environment variables (C(payments_env) of an app host). Pass only the variables to judge, since every
        value given here is masked in the module's output, a short one (a port, a number) included.
    type: dict
    required: true
  environment:
    description: The name of the environment the values belong to (for messages, and the default of O(strict)).
    type: str
    required: true
  strict:
    description:
      - Apply production's rules (password length, TLS with certificate verification, a 32-byte salt).
      - Default true when O(environment) is C(production).
    type: bool
  checks:
    description: The variables to judge.
    type: list
    elements: str
    choices: [HASH_SALT, DATABASE_URL, REDIS_URL, STRIPE_WEBHOOK_SECRET]
    default: [HASH_SALT, DATABASE_URL, REDIS_URL, STRIPE_WEBHOOK_SECRET]
  min_salt_bytes:
    description: The fewest bytes of randomness C(HASH_SALT) may hold; default 32 under O(strict), else 16.
    type: int
  min_password_length:
    description: The fewest characters of the database's and Redis's passwords under O(strict).
    type: int
    default: 16
  other_hash_salt_sha256:
    description:
      - The sha256 (hex) of each other environment's C(HASH_SALT), by environment name (a digest or a list of them).
        C(HASH_SALT) must differ from all of them.
      - Digests of a weak salt can be reversed by guessing, so they are not logged either.
    type: dict
    default: {}
requirements:
  - psycopg 3.1 or newer (to read C(DATABASE_URL) as libpq does)
seealso:
  - module: payments.deploy.signoff_info
"""

EXAMPLES = r"""
- name: Judge the secrets of every production app host
  payments.deploy.secret_quality_info:
    env: "{{ hostvars[item].payments_env }}"
    environment: production
    other_hash_salt_sha256:
      staging: "{{ vault_staging_hash_salt_sha256 }}"
  loop: "{{ groups['production_app'] }}"
  loop_control:
    label: "{{ item }}"
  delegate_to: localhost
  run_once: true
  register: secret_quality
"""

RETURN = r"""
passed:
  description: Whether every checked variable passes.
  returned: always
  type: bool
problems:
  description: Every problem found, naming the variable and the rule (never a value).
  returned: always
  type: list
  elements: str
  sample: ["HASH_SALT holds about 16 bytes of randomness, fewer than the 32 required (...)",
           "REDIS_URL uses redis://: use rediss:// so that the password and cached values travel encrypted"]
verdicts:
  description: By variable, C(passed) and its C(problems).
  returned: always
  type: dict
  sample: {"HASH_SALT": {"passed": true, "problems": []}, "STRIPE_WEBHOOK_SECRET": {"passed": false,
           "problems": ["STRIPE_WEBHOOK_SECRET is empty"]}}
strict:
  description: Whether production's rules applied.
  returned: always
  type: bool
"""

import re
import typing as t

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils._conninfo import PSYCOPG_IMPORT_ERROR
from ansible_collections.payments.deploy.plugins.module_utils._secret_quality import CHECKS, SHA256_HEX, check_env


ENVIRONMENT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}\Z")


def digests_by_environment(option: t.Mapping[str, t.Any]) -> tuple[dict[str, list[str]], list[str]]:
    """The option's digests as lists, and the problems with its shape (which never show a digest)."""
    found: dict[str, list[str]] = {}
    problems = []
    for environment, value in option.items():
        digests = [value] if isinstance(value, str) else value if isinstance(value, list) else None
        if digests is None or not all(isinstance(d, str) and SHA256_HEX.match(d.strip().lower()) for d in digests):
            problems.append(f"other_hash_salt_sha256.{environment} must be a sha256 (64 hex characters) or a list of them")
            continue
        found[str(environment)] = digests
    return found, problems


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "env": {"type": "dict", "required": True, "no_log": True},
            "environment": {"type": "str", "required": True},
            "strict": {"type": "bool"},
            "checks": {"type": "list", "elements": "str", "choices": list(CHECKS), "default": list(CHECKS)},
            "min_salt_bytes": {"type": "int"},
            "min_password_length": {"type": "int", "default": 16, "no_log": False},
            "other_hash_salt_sha256": {"type": "dict", "default": {}, "no_log": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    strict = params["strict"] if params["strict"] is not None else params["environment"] == "production"
    min_salt = params["min_salt_bytes"] if params["min_salt_bytes"] is not None else (32 if strict else 16)
    others, bad = digests_by_environment(params["other_hash_salt_sha256"])
    if not ENVIRONMENT_NAME.match(params["environment"]):
        bad.append("environment must be a name of lower-case letters, digits, '-' and '_' (at most 32)")
    if any(not isinstance(key, str) or not ENV_NAME.match(key) for key in params["env"]):
        bad.append("env must map environment variable names (A-Z, 0-9, _) to their values")
    elif any(value is not None and not isinstance(value, (str, int, float)) for value in params["env"].values()):
        bad.append("env values must be strings (no value is shown)")
    if not 8 <= min_salt <= 1024:
        bad.append("min_salt_bytes must be from 8 to 1024")
    if not 8 <= params["min_password_length"] <= 1024:
        bad.append("min_password_length must be from 8 to 1024")
    if bad:
        module.fail_json(msg="; ".join(bad))
    if "DATABASE_URL" in params["checks"] and PSYCOPG_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)

    verdicts = check_env(params["env"], params["checks"], strict, min_salt, params["min_password_length"], others)
    problems = [problem for name in params["checks"] for problem in verdicts[name]]
    module.exit_json(changed=False, passed=not problems, problems=problems, strict=strict,
                     verdicts={name: {"passed": not found, "problems": found} for name, found in verdicts.items()})


if __name__ == "__main__":
    main()

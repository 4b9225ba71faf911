#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: staging_evidence_info
short_description: Find the journal record that proves an artifact passed a deploy and smoke test in an environment
version_added: 0.2.0
description:
  - Reads an environment's deploy journal history (C(DIR/ENVIRONMENT/history.jsonl), one JSON record a line) and finds the
    newest C(deploy) record of the same artifact (the same sha256) whose smoke test passed (and, with
    O(require_load_test), whose load test passed), no older than O(max_age_days).
  - The deploy playbook uses it to refuse a production deploy of an artifact that never passed staging.
  - Read-only. It does not fail when there is no evidence; it says why each record of the artifact was refused.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  journal_dir:
    description: The journal's directory (the one that holds a directory per environment).
    type: path
    required: true
  environment:
    description: The environment whose history proves the artifact, usually C(staging).
    type: str
    required: true
  release_sha256:
    description: The sha256 of the artifact about to be deployed (64 hex characters).
    type: str
    required: true
  release_version:
    description: The release version; records of the same version with another artifact are reported as refused.
    type: str
  max_age_days:
    description: How old the evidence may be, in days.
    type: float
    default: 7
  require_load_test:
    description:
      - Also require the record's load test (C(load_test) in the record, written by a deploy that ran
        M(payments.deploy.load_test) on the new colour) to have passed.
      - A record without one, or with a failed one, is refused with the reason.
    type: bool
    default: false
seealso:
  - module: payments.deploy.smoke_test
  - module: payments.deploy.load_test
"""

EXAMPLES = r"""
- name: Did this artifact pass staging in the last 7 days?
  payments.deploy.staging_evidence_info:
    journal_dir: /var/lib/payments/journal
    environment: staging
    release_sha256: "{{ plan.release_sha256 }}"
    release_version: 1.4.2
  register: staging

- name: Refuse without it
  ansible.builtin.fail:
    msg: "1.4.2 never passed staging: {{ staging.refused | join('; ') }}"
  when: staging.evidence is none
"""

RETURN = r"""
evidence:
  description: The newest record proving the artifact (as the journal holds it), or null.
  returned: always
  type: dict
  sample: {"kind": "deploy", "environment": "staging", "release_to": "1.4.2", "release_sha256": "9f86d0...",
           "recorded_at": "2026-11-27T03:50:00.123456Z", "smoke": {"passed": true},
           "load_test": {"passed": true, "target_rps": 20, "achieved_rps": 19.9, "p95": 0.042}}
age_days:
  description: The age of the evidence in days, or null.
  returned: always
  type: float
  sample: 0.4
refused:
  description: Why each record of the same artifact (or of the same version) was not accepted, newest first.
  returned: always
  type: list
  elements: str
  sample: ["1.4.2: recorded without a passing smoke test"]
records_read:
  description: How many records the history holds.
  returned: always
  type: int
history_file:
  description: The file read.
  returned: always
  type: str
"""

import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils._journal import (
    JournalError, find_evidence, read_history, record_time)

_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "journal_dir": {"type": "path", "required": True},
            "environment": {"type": "str", "required": True},
            "release_sha256": {"type": "str", "required": True},
            "release_version": {"type": "str"},
            "max_age_days": {"type": "float", "default": 7.0},
            "require_load_test": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    problems = []
    if not _NAME.match(params["environment"]):
        problems.append("environment must be a plain name (letters, digits, _ and -)")
    sha256 = params["release_sha256"].lower()
    if not _SHA256.match(sha256):
        problems.append("release_sha256 must be 64 hex characters")
    if not 0 < params["max_age_days"] <= 365:
        problems.append("max_age_days must be above 0 and at most 365")
    if problems:
        module.fail_json(msg="; ".join(problems))
    path = os.path.join(params["journal_dir"], params["environment"], "history.jsonl")
    try:
        records = read_history(path)
    except JournalError as exc:
        module.fail_json(msg=str(exc), history_file=path)
    now = time.time()
    evidence, refused = find_evidence(records, params["environment"], sha256, params["max_age_days"] * 86400,
                                      version=params["release_version"], now=now,
                                      require_load_test=params["require_load_test"])
    written = record_time(evidence) if evidence else None
    module.exit_json(changed=False, evidence=evidence, refused=refused, records_read=len(records), history_file=path,
                     age_days=None if written is None else round((now - written) / 86400, 3))


if __name__ == "__main__":
    main()

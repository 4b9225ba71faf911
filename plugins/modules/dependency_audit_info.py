#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dependency_audit_info
short_description: Match a release's pinned Python packages against an offline OSV advisory database
version_added: 0.4.0
description:
  - Reads every advisory of O(database) (OSV JSON, one advisory per C(*.json) file, as the PyPA advisory database and
    osv.dev's exports publish them) and matches the PyPI ones against the packages given by O(packages),
    O(requirements_files) and O(requirements).
  - ECOSYSTEM and SEMVER ranges are compared as PEP 440 versions (C(introduced), C(fixed), C(last_affected) and
    C(limit) events, several ranges, explicit C(versions)); pre-releases sort before their release. Withdrawn advisories
    are skipped.
  - A severity comes from C(database_specific.severity) (C(moderate) is C(medium)), else from the highest CVSS 3 base
    score of C(severity); an advisory with neither is C(unknown) and ranks as C(critical).
  - Findings at or above O(block_severity) that no O(waivers) entry names are returned in RV(blocking); the module does
    not fail on them (the caller decides, production blocks). It fails on a malformed advisory, an unpinned requirement
    and a waiver without a name, a date or a justification of at least 20 characters.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  database:
    description: A directory of OSV advisories (C(*.json), searched recursively) or one JSON file (an advisory or a list).
    type: path
    required: true
  packages:
    description: Installed packages, as the runtime interpreter lists them.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The distribution name.
        type: str
        required: true
      version:
        description: The installed version.
        type: str
        required: true
  requirements_files:
    description: Pinned requirements files (C(name==version) lines; comments, environment markers and C(--hash) allowed).
    type: list
    elements: path
    default: []
  requirements:
    description: Pinned requirement lines, for a requirements file read elsewhere (for example on an app host).
    type: list
    elements: str
    default: []
  block_severity:
    description: The lowest severity that blocks (see RV(blocking)).
    type: str
    choices: [low, medium, high, critical]
    default: critical
  waivers:
    description:
      - Accepted risks, by advisory id or alias. Each value is a dictionary with C(by) (who accepted it), C(date)
        (YYYY-MM-DD, not in the future) and C(justification) (at least 20 characters).
    type: dict
    default: {}
requirements:
  - packaging (PEP 440 versions)
seealso:
  - name: OSV schema
    description: The format of the advisory database.
    link: https://ossf.github.io/osv-schema/
"""

EXAMPLES = r"""
- name: Audit the packages of the runtime against the offline advisories
  payments.deploy.dependency_audit_info:
    database: /srv/advisories/pypi
    packages: "{{ runtime_packages }}"
    requirements_files: [/opt/payments/releases/1.4.2/requirements.txt]
    block_severity: high
    waivers:
      GHSA-xxxx-yyyy-zzzz:
        by: Grace Hopper
        date: "2026-11-20"
        justification: The vulnerable multipart parser is never reached; uploads are refused by the proxy.
  delegate_to: localhost
  register: audit
"""

RETURN = r"""
findings:
  description: Every advisory that affects a package, sorted by severity (highest first).
  returned: always
  type: list
  elements: dict
  sample: [{"id": "PYSEC-2026-1", "aliases": ["CVE-2026-0001"], "package": "gunicorn", "installed_version": "27.0.1",
            "fixed_versions": ["27.0.2"], "severity": "medium", "severity_source": "database_specific.severity",
            "summary": "Request smuggling", "source": "installed"}]
blocking:
  description: The findings at or above O(block_severity) that no waiver covers.
  returned: always
  type: list
  elements: dict
waived:
  description: The findings at or above O(block_severity) that a waiver covers, each with its C(waiver).
  returned: always
  type: list
  elements: dict
passed:
  description: Whether nothing blocks.
  returned: always
  type: bool
packages_scanned:
  description: How many packages were matched.
  returned: always
  type: int
advisories:
  description: How many advisories the database holds.
  returned: always
  type: int
unreadable_versions:
  description: Packages whose version is not PEP 440 (they cannot be matched; name==version).
  returned: always
  type: list
  elements: str
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils import _dependency_audit as audit_lib

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
VERSION_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]{0,63}\Z")


def option_problems(params: dict) -> list[str]:
    problems = []
    if not os.path.exists(params["database"]):
        problems.append(f"database {params['database']} does not exist")
    for package in params["packages"]:
        if not NAME.match(package["name"]) or not VERSION_TEXT.match(package["version"]):
            problems.append(f"packages holds {package['name'][:60]!r} {package['version'][:60]!r}, not a distribution name and version")
            break
    for path in params["requirements_files"]:
        if not os.path.isfile(path):
            problems.append(f"requirements_files: {path} is not a file")
    if not (params["packages"] or params["requirements_files"] or params["requirements"]):
        problems.append("nothing to audit: give packages, requirements_files or requirements")
    if not all(isinstance(key, str) and audit_lib.ADVISORY_ID.match(key) for key in params["waivers"]):
        problems.append("waivers must be keyed by advisory ids (letters, digits, '.', '_', ':', '-')")
    else:
        problems += audit_lib.check_waivers(params["waivers"])
    return problems


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "database": {"type": "path", "required": True},
            "packages": {"type": "list", "elements": "dict", "default": [],
                         "options": {"name": {"type": "str", "required": True}, "version": {"type": "str", "required": True}}},
            "requirements_files": {"type": "list", "elements": "path", "default": []},
            "requirements": {"type": "list", "elements": "str", "default": []},
            "block_severity": {"type": "str", "choices": list(audit_lib.SEVERITIES), "default": "critical"},
            "waivers": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    params = module.params
    problems = option_problems(params)
    if problems:
        module.fail_json(msg="; ".join(problems))
    if audit_lib.Version is None:
        module.fail_json(msg=missing_required_lib("packaging"))
    packages = [{**package, "source": "installed"} for package in params["packages"]]
    try:
        for path in params["requirements_files"]:
            with open(path, encoding="utf-8") as stream:
                packages += audit_lib.parse_requirements(stream.read().splitlines(), path)
    except (audit_lib.AdvisoryError, OSError, UnicodeDecodeError) as exc:
        module.fail_json(msg=f"requirements_files: {exc}")
    try:
        packages += audit_lib.parse_requirements(params["requirements"], "requirements")
        advisories = audit_lib.load_database(params["database"])
    except audit_lib.AdvisoryError as exc:
        module.fail_json(msg=str(exc) if str(exc).startswith("requirements") else f"database: {exc}")
    findings, unreadable = audit_lib.audit(packages, advisories)
    findings.sort(key=lambda f: (-audit_lib.rank(f["severity"]), f["package"], f["id"]))
    blocking, waived = audit_lib.gate(findings, params["block_severity"], params["waivers"])
    module.exit_json(changed=False, findings=findings, blocking=blocking, waived=waived, passed=not blocking,
                     packages_scanned=len(packages), advisories=len(advisories), unreadable_versions=unreadable)


if __name__ == "__main__":
    main()

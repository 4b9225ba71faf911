#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: signoff_info
short_description: Judge a release's production sign-offs, attestations and waivers
version_added: 0.3.0
description:
  - Reads the sign-offs that approve a release for production (from O(signoff_file), from O(signoffs), or both, where
    an entry of the variables replaces the file's entry of the same role or line) and judges each against the artifact
    about to be deployed.
  - A sign-off counts only when it names who signed, a reference (ticket or change id), an ISO 8601 date no older than
    O(max_age_days) and not in the future, and the sha256 of this very artifact.
  - With O(checklist_map), every checklist item whose status is C(gate) needs an attestation (who, when, reference) or
    a waiver (who, when, and a real justification, not C(n/a), C(TBD) or C(none)); an id the map does not hold is
    refused as a typo.
  - Read-only. It does not fail when a sign-off is missing or refused; it returns every reason at once in RV(problems).
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  signoff_file:
    description:
      - A YAML file with the mappings C(signoffs) (role to C({name, date, reference, sha256})), C(attestations) (checklist
        line id to C({by, date, reference})) and C(waivers) (checklist line id to C({by, date, justification})).
      - A file that does not exist, or is not such a mapping, is reported in RV(problems).
    type: path
  signoffs:
    description: Sign-offs by role, as in the file's C(signoffs) (extra vars, or the variables of an approval step).
    type: dict
  attestations:
    description: Attestations by checklist line id, as in the file's C(attestations).
    type: dict
  waivers:
    description: Waivers by checklist line id, as in the file's C(waivers).
    type: dict
  release_sha256:
    description: The sha256 of the artifact about to be deployed (64 hex characters); every sign-off must name it.
    type: str
    required: true
  max_age_days:
    description: How old a sign-off or an attestation may be, in days (waivers do not age).
    type: float
    default: 14
  required_roles:
    description: The roles that must sign off.
    type: list
    elements: str
    default: [development_lead, security_officer, operations_manager, business_owner]
  distinct_signers:
    description: Refuse one person signing for two roles.
    type: bool
    default: true
  checklist_map:
    description:
      - The checklist map (YAML, a top-level C(lines) list of C({id, kind, status, text, gate})). Its items of status
        C(gate) need an attestation or a waiver.
      - Omitted, attestations and waivers are not judged (RV(lines_checked) is false).
    type: path
  automated_lines:
    description:
      - Checklist items of status C(gate) that this run checks itself, failing closed, because the inventory enables
        the check the map names for them (C(gate.automated_by)); they need no attestation. An id whose map entry
        names no such check is refused.
    type: list
    elements: str
    default: []
  min_justification_length:
    description: The fewest characters a waiver's justification may have.
    type: int
    default: 20
requirements:
  - PyYAML
seealso:
  - module: payments.deploy.secret_quality_info
"""

EXAMPLES = r"""
- name: Judge the sign-offs of the artifact about to go to production
  payments.deploy.signoff_info:
    signoff_file: "{{ inventory_dir }}/signoffs.yml"
    release_sha256: "{{ preflight_release_sha256 }}"
    checklist_map: "{{ role_path }}/../../checklist/map.yml"
  register: signoffs

- name: Refuse the deploy without them
  ansible.builtin.fail:
    msg: "Not signed off: {{ signoffs.problems | join('; ') }}"
  when: not signoffs.passed
"""

RETURN = r"""
passed:
  description: Whether every required role signed off for this artifact and every gate item is attested or waived.
  returned: always
  type: bool
problems:
  description: Every reason the release is not signed off (no value of a secret; sha256s shortened).
  returned: always
  type: list
  elements: str
  sample: ["the security_officer has not signed off", "the business_owner sign-off is dated 2026-10-01, 58 days ago,
           older than the 14 days allowed"]
notes:
  description: Entries that are not needed (an attestation of a line that is not a gate).
  returned: always
  type: list
  elements: str
signoffs:
  description: The accepted sign-offs by role, each with C(source) (C(file) or C(variables)).
  returned: always
  type: dict
  sample: {"security_officer": {"name": "Grace Hopper", "date": "2026-11-27", "reference": "CHG-1042",
                                "sha256": "9f86d0...", "source": "file"}}
attestations:
  description: The accepted attestations by checklist line id (C(by), C(date), C(reference), the line's C(text)).
  returned: always
  type: dict
waivers:
  description: The accepted waivers by checklist line id (C(by), C(date), C(justification), the line's C(text)).
  returned: always
  type: dict
gate_lines:
  description: The ids of the checklist items whose status is C(gate).
  returned: always
  type: list
  elements: str
automated_lines:
  description: The gate items accepted as checked by the run itself (O(automated_lines)); they needed no attestation.
  returned: always
  type: list
  elements: str
lines_checked:
  description: Whether attestations and waivers were judged against a checklist map.
  returned: always
  type: bool
signoff_file_sha256:
  description: The sha256 of the sign-off file read, or null.
  returned: always
  type: str
checklist_map_sha256:
  description: The sha256 of the checklist map read, or null.
  returned: always
  type: str
checked_at:
  description: When the sign-offs were judged (UTC, ISO 8601).
  returned: always
  type: str
signoff_file:
  description: The sign-off file read (O(signoff_file)), or null.
  returned: always
  type: str
checklist_map:
  description: The checklist map read (O(checklist_map)), or null.
  returned: always
  type: str
release_sha256:
  description: The artifact judged (O(release_sha256), lower case).
  returned: always
  type: str
max_age_days:
  description: The oldest a sign-off or an attestation could be (O(max_age_days)).
  returned: always
  type: float
"""

import datetime
import hashlib
import traceback
import typing as t

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils._signoff import (
    ROLES, SHA256, ChecklistMapError, automated_gates, gate_lines, judge_lines, judge_signoffs)

YAML_IMPORT_ERROR: str | None
try:
    import yaml
except ImportError:
    YAML_IMPORT_ERROR = traceback.format_exc()
else:
    YAML_IMPORT_ERROR = None

FILE_KEYS = ("signoffs", "attestations", "waivers")


def read_yaml(path: str, label: str) -> tuple[t.Any, str | None, str | None]:
    """(the document, its sha256, a problem) of a YAML file."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None, None, f"the {label} {path} does not exist"
    except OSError as exc:
        return None, None, f"the {label} {path} cannot be read: {exc.strerror}"
    try:
        return yaml.safe_load(raw), hashlib.sha256(raw).hexdigest(), None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        return None, hashlib.sha256(raw).hexdigest(), f"the {label} {path} is not valid YAML{at}"


def plain_absolute_path(value: str) -> bool:
    """An absolute path a message can name on one line: no control characters, no Unicode line separators."""
    return (value.startswith("/") and len(value) <= 4096
            and not any(ord(char) < 32 or 0x7F <= ord(char) <= 0x9F or char in "\u2028\u2029" for char in value))


def merged(file_part: t.Any, variables: t.Any) -> tuple[t.Any, dict[str, str]]:
    """The file's entries overlaid with the variables' (variables win), and where each entry came from."""
    if not isinstance(file_part, t.Mapping) or not isinstance(variables, t.Mapping):
        chosen = variables if variables is not None else file_part
        source = "variables" if variables is not None else "file"
        return chosen, {str(key): source for key in chosen} if isinstance(chosen, t.Mapping) else {}
    sources = {str(key): "file" for key in file_part}
    sources.update({str(key): "variables" for key in variables})
    return {**file_part, **variables}, sources


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "signoff_file": {"type": "path"},
            "signoffs": {"type": "dict"},
            "attestations": {"type": "dict"},
            "waivers": {"type": "dict"},
            "release_sha256": {"type": "str", "required": True},
            "max_age_days": {"type": "float", "default": 14.0},
            "required_roles": {"type": "list", "elements": "str", "default": list(ROLES)},
            "distinct_signers": {"type": "bool", "default": True},
            "checklist_map": {"type": "path"},
            "automated_lines": {"type": "list", "elements": "str", "default": []},
            "min_justification_length": {"type": "int", "default": 20},
        },
        supports_check_mode=True,
    )
    if YAML_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("PyYAML"), exception=YAML_IMPORT_ERROR)
    params = module.params
    sha256 = params["release_sha256"].strip().lower()
    bad = []
    if not SHA256.match(sha256):
        bad.append("release_sha256 must be 64 hex characters")
    if not 0 < params["max_age_days"] <= 365:
        bad.append("max_age_days must be above 0 and at most 365")
    if not params["required_roles"] or any(not role.strip() for role in params["required_roles"]):
        bad.append("required_roles must name at least one role, none empty")
    if not 1 <= params["min_justification_length"] <= 1000:
        bad.append("min_justification_length must be from 1 to 1000")
    for name in ("signoff_file", "checklist_map"):
        if params[name] is not None and not plain_absolute_path(params[name]):
            bad.append(f"{name} must be an absolute path without control or line-separator characters")
    if bad:
        module.fail_json(msg="; ".join(bad))

    now = datetime.datetime.now(datetime.timezone.utc)
    problems: list[str] = []
    document: t.Any = {}
    file_sha256 = None
    if params["signoff_file"]:
        document, file_sha256, problem = read_yaml(params["signoff_file"], "sign-off file")
        if problem:
            problems.append(problem)
            document = {}
        elif document is None:
            document = {}
        elif not isinstance(document, t.Mapping):
            problems.append(f"the sign-off file {params['signoff_file']} must be a mapping with {', '.join(FILE_KEYS)}")
            document = {}
        problems.extend(f"the sign-off file has an unknown top-level key {key!r} (known: {', '.join(FILE_KEYS)})"
                        for key in document if key not in FILE_KEYS)
    elif params["signoffs"] is None:
        problems.append("no sign-offs were given (neither a sign-off file nor sign-off variables)")

    signoffs, sources = merged(document.get("signoffs"), params["signoffs"])
    found, accepted = judge_signoffs({} if signoffs is None else signoffs, sha256, now, params["max_age_days"],
                                     params["required_roles"], params["distinct_signers"])
    problems.extend(found)
    for role, record in accepted.items():
        record["source"] = sources.get(role, "file")

    attestations, waivers, gated, notes, automated = {}, {}, [], [], []
    map_sha256 = None
    lines_checked = False
    if params["checklist_map"]:
        lines_doc, map_sha256, problem = read_yaml(params["checklist_map"], "checklist map")
        try:
            if problem:
                raise ChecklistMapError(problem)
            lines, gated = gate_lines(lines_doc)
        except ChecklistMapError as exc:
            problems.append(f"{exc}: the manual gates of the checklist cannot be checked")
        else:
            found, automated = automated_gates(params["automated_lines"], lines, gated)
            problems.extend(found)
            found, notes, attestations, waivers = judge_lines(
                merged(document.get("attestations"), params["attestations"])[0],
                merged(document.get("waivers"), params["waivers"])[0],
                lines, gated, now, params["max_age_days"], params["min_justification_length"], automated)
            problems.extend(found)
            lines_checked = True

    module.exit_json(changed=False, passed=not problems, problems=problems, notes=notes, signoffs=accepted,
                     attestations=attestations, waivers=waivers, gate_lines=gated, automated_lines=automated,
                     lines_checked=lines_checked,
                     signoff_file=params["signoff_file"], signoff_file_sha256=file_sha256,
                     checklist_map=params["checklist_map"], checklist_map_sha256=map_sha256,
                     checked_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"), max_age_days=params["max_age_days"],
                     release_sha256=sha256)


if __name__ == "__main__":
    main()

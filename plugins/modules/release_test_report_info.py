#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_test_report_info
short_description: Check a release's signed test attestation against the installed artifact
version_added: 0.1.0
description:
  - Reads the test attestation a release pipeline publishes beside the artifact (C(NAME-VERSION.tar.gz.tests.json)),
    verifies its detached L(minisign,https://jedisct1.github.io/minisign/) signature (C(.tests.json.minisig)) in Python,
    as M(payments.deploy.release_signature) does, and judges what it says.
  - The attestation passes when it is signed by a trusted key, names the sha256 of the installed artifact (an
    attestation of another artifact is refused), names a 40-digit source commit and a branch or tag matching
    O(ref_pattern), finished at most O(max_age_days) ago, and every suite of O(required_suites) ran at least
    O(min_tests) tests with no failure and no error and skipped at most O(max_skipped_fraction) of them.
  - Every problem is collected; with O(fail_on_problems) the module fails with all of them in one message, otherwise
    it returns them with RV(passed=false).
  - Changes nothing.
author: "Payments Platform Team (@payments-platform)"
requirements:
  - cryptography
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  path:
    description:
      - The attestation file (JSON). A file that does not exist is reported as a problem (nothing was published).
    type: path
    required: true
  signature:
    description:
      - The content of the attestation's C(.minisig) file. Empty or omitted when none was published.
      - Mutually exclusive with O(signature_path).
    type: str
  signature_path:
    description:
      - The attestation's C(.minisig) file, instead of O(signature); a file that does not exist means no signature.
    type: path
  public_keys:
    description:
      - The trusted minisign public keys (the base64 line of a C(minisign.pub), or the whole file). Without one, the
        signature cannot be checked, which is a problem.
    type: list
    elements: str
    default: []
  artifact_sha256:
    description:
      - The sha256 of the installed artifact the attestation must describe. One of O(artifact_sha256) and
        O(artifact_path) is required.
    type: str
  artifact_path:
    description:
      - The installed artifact itself; its sha256 is computed.
    type: path
  name:
    description:
      - When given, the attestation's C(name) must be this.
    type: str
  version:
    description:
      - When given, the attestation's C(version) must be this.
    type: str
  required_suites:
    description:
      - The suite kinds that must be present and clean. Other suites are reported; their failures count too.
    type: list
    elements: str
    default: [unit, integration, security]
  min_tests:
    description:
      - The fewest tests each required suite must have run.
    type: int
    default: 1
  max_skipped_fraction:
    description:
      - The largest share of a required suite's tests that may be skipped, from 0 to 1.
    type: float
    default: 0.1
  ref_pattern:
    description:
      - A Python regular expression the branch or tag the artifact was built from must match (searched; anchor it).
    type: str
    default: '^(main|release/.+|v[0-9]+(\.[0-9]+)*)$'
  max_age_days:
    description:
      - The oldest attestation accepted, in days since its C(finished_at).
    type: float
    default: 30
  fail_on_problems:
    description:
      - Fail when the attestation does not pass. When false the problems are returned with RV(passed=false).
    type: bool
    default: true
seealso:
  - module: payments.deploy.release_signature
"""

EXAMPLES = r"""
- name: Check that the installed artifact's test suites passed
  payments.deploy.release_test_report_info:
    path: /tmp/attestation/payment-service-1.1.0.tar.gz.tests.json
    signature: "{{ attestation_minisig.content }}"
    public_keys: [RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3]
    artifact_sha256: "{{ installed_artifact.stat.checksum }}"
    version: 1.1.0
    ref_pattern: '^(main|release/.+)$'
    max_age_days: 14

- name: Report without failing (staging)
  payments.deploy.release_test_report_info:
    path: /srv/payment-service-1.1.0.tar.gz.tests.json
    signature_path: /srv/payment-service-1.1.0.tar.gz.tests.json.minisig
    public_keys: "{{ release_signature_public_keys }}"
    artifact_path: /opt/payments/artifacts/payment-service-1.1.0.tar.gz
    fail_on_problems: false
  register: test_report
"""

RETURN = r"""
passed:
  description: Whether the attestation clears the artifact (signed, of this artifact, every rule met).
  returned: always
  type: bool
  sample: true
problems:
  description: Every reason it does not, one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["suite security has 1 failure(s) and 0 error(s)"]
signed:
  description: Whether the signature was verified with a trusted key.
  returned: always
  type: bool
  sample: true
key_id:
  description: The id of the key that signed the attestation.
  returned: when signed
  type: str
  sample: E7620F1842B4E81F
expected_sha256:
  description: The sha256 of the installed artifact.
  returned: always
  type: str
  sample: 4f0c2f3d5e4b6a79f7c0c4d8f0d8b1f0e6a5f3c1e2d4b6a8c0e2f4a6b8d0c2e4
report:
  description:
    - The attestation's figures, C(name), C(version), C(artifact), C(artifact_sha256), C(commit), C(ref), C(run_id),
      C(run_url), C(finished_at), C(age_days), C(suites) (per kind C(tests), C(failures), C(errors), C(skipped),
      C(junit_sha256)) and C(totals). Empty when the attestation could not be read.
  returned: always
  type: dict
  sample:
    commit: 0a1b2c3d4e5f60718293a4b5c6d7e8f901234567
    ref: main
    suites: {unit: {tests: 41, failures: 0, errors: 0, skipped: 0}}
    totals: {tests: 41, failures: 0, errors: 0, skipped: 0}
msg:
  description: The outcome in one sentence.
  returned: always
  type: str
  sample: "payment-service-1.1.0.tar.gz.tests.json passed: 3 suites, 67 tests, commit 0a1b2c3d4e5f on main"
"""

import datetime
import hashlib
import math
import os
import re

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils import _minisign as minisign
from ansible_collections.payments.deploy.plugins.module_utils import _test_report as test_report

SUITE_KIND = re.compile(r"[a-z][a-z0-9_-]{0,39}")


def option_problems(params: dict) -> list[str]:
    """Options that make the judgement meaningless: refused before anything is read."""
    problems = []
    sha = params["artifact_sha256"]
    if sha is not None and not test_report.SHA256.fullmatch(sha.lower()):
        problems.append("artifact_sha256 is not a sha256 hex digest")
    if params["min_tests"] < 0:
        problems.append("min_tests must not be negative")
    fraction = params["max_skipped_fraction"]
    if not math.isfinite(fraction) or not 0 <= fraction <= 1:
        problems.append("max_skipped_fraction must be a number from 0 to 1")
    age = params["max_age_days"]
    if not math.isfinite(age) or age <= 0:
        problems.append("max_age_days must be a positive number")
    if not params["required_suites"]:
        problems.append("required_suites must name at least one suite")
    bad = [kind for kind in params["required_suites"] if not SUITE_KIND.fullmatch(kind)]
    if bad:
        problems.append(f"required_suites holds names that are not suite kinds: {', '.join(map(repr, bad))[:200]}")
    try:
        re.compile(params["ref_pattern"])
    except re.error as error:
        problems.append(f"ref_pattern is not a regular expression: {error}")
    for number, key in enumerate(params["public_keys"], 1):
        if key and key.strip():
            try:
                minisign.parse_public_key(key)
            except minisign.SignatureError as error:
                problems.append(f"public_keys item {number} is not a minisign public key: {error}")
    return problems


def artifact_sha256(module: AnsibleModule) -> str:
    if module.params["artifact_sha256"] is not None:
        return module.params["artifact_sha256"].lower()
    digest = hashlib.sha256()
    try:
        with open(module.params["artifact_path"], "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as error:
        module.fail_json(msg=f"cannot read the artifact {module.params['artifact_path']}: {error}", passed=False)
    return digest.hexdigest()


def read_signature(module: AnsibleModule) -> str:
    if not module.params["signature_path"]:
        return module.params["signature"] or ""
    try:
        with open(module.params["signature_path"], encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as error:
        module.fail_json(msg=f"cannot read the signature {module.params['signature_path']}: {error}", passed=False)
    return ""


def check_signature(path: str, signature: str, keys: list[str]) -> tuple[str | None, list[str]]:
    """The signing key's id, or the problem with the signature."""
    if not signature.strip():
        return None, ["the attestation is not signed (no .minisig)"]
    if not keys:
        return None, ["no public key is configured to check the attestation's signature"]
    try:
        return minisign.verify_file(path, signature, keys).key_id, []
    except minisign.SignatureError as error:
        return None, [f"the attestation's signature was refused: {error}"]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "signature": {"type": "str"},
            "signature_path": {"type": "path"},
            "public_keys": {"type": "list", "elements": "str", "default": []},
            "artifact_sha256": {"type": "str"},
            "artifact_path": {"type": "path"},
            "name": {"type": "str"},
            "version": {"type": "str"},
            "required_suites": {"type": "list", "elements": "str", "default": ["unit", "integration", "security"]},
            "min_tests": {"type": "int", "default": 1},
            "max_skipped_fraction": {"type": "float", "default": 0.1},
            "ref_pattern": {"type": "str", "default": r"^(main|release/.+|v[0-9]+(\.[0-9]+)*)$"},
            "max_age_days": {"type": "float", "default": 30},
            "fail_on_problems": {"type": "bool", "default": True},
        },
        mutually_exclusive=[("signature", "signature_path"), ("artifact_sha256", "artifact_path")],
        required_one_of=[("artifact_sha256", "artifact_path")],
        supports_check_mode=True,
    )
    if not minisign.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=minisign.CRYPTOGRAPHY_IMPORT_ERROR)
    params = module.params
    refused = option_problems(params)
    if refused:
        module.fail_json(msg="; ".join(refused), passed=False)
    expected = artifact_sha256(module)
    path = params["path"]
    name = os.path.basename(path)
    result = {"changed": False, "passed": False, "signed": False, "expected_sha256": expected, "report": {}}
    keys = [key for key in params["public_keys"] if key and key.strip()]
    signature = read_signature(module)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(test_report.MAX_TEXT + 1)
    except FileNotFoundError:
        finish(module, result, [f"no test attestation was published ({path} does not exist)"], name)
    except (OSError, UnicodeDecodeError) as error:
        finish(module, result, [f"cannot read the test attestation {path}: {error}"], name)
    key_id, problems = check_signature(path, signature, keys)
    if key_id:
        result.update(signed=True, key_id=key_id)
    try:
        report = test_report.parse(text)
    except test_report.ReportError as error:
        finish(module, result, problems + [str(error)], name)
    expect = test_report.Expectations(
        artifact_sha256=expected, required_suites=params["required_suites"], min_tests=params["min_tests"],
        max_skipped_fraction=params["max_skipped_fraction"], ref_pattern=re.compile(params["ref_pattern"]),
        max_age_days=params["max_age_days"], name=params["name"], version=params["version"])
    figures, judged = test_report.judge(report, expect, datetime.datetime.now(datetime.timezone.utc))
    result["report"] = figures
    finish(module, result, problems + judged, name)


def finish(module: AnsibleModule, result: dict, problems: list[str], name: str) -> None:
    result.update(problems=problems, passed=not problems)
    if problems:
        message = f"{name} does not clear the artifact: {'; '.join(problems)}"
        if module.params["fail_on_problems"]:
            module.fail_json(msg=message, **result)
        module.exit_json(msg=message, **result)
    report = result["report"]
    totals = report["totals"]
    module.exit_json(msg=f"{name} passed: {len(report['suites'])} suites, {totals['tests']} tests, "
                         f"commit {str(report['commit'])[:12]} on {report['ref']}", **result)


if __name__ == "__main__":
    main()

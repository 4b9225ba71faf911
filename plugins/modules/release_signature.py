#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_signature
short_description: Verify a release artifact's detached minisign signature
version_added: 0.1.0
description:
  - Checks a file against a detached L(minisign,https://jedisct1.github.io/minisign/) signature made by one of the
    trusted public keys, in Python (Ed25519 of the C(cryptography) package); the C(minisign) program is not needed.
  - Both signature formats are accepted, C(Ed) (legacy, over the file) and C(ED) (over the file's BLAKE2b-512 digest,
    the default of minisign 0.10 and later). The file signature and the global signature over the trusted comment
    must both verify, and the signature's key id must be the id of a trusted key.
  - Without a signature, the result depends on O(required); a signature that is present is always checked when
    public keys are given, and a bad one always fails.
  - Changes nothing on the host.
author: "Payments Platform Team (@payments-platform)"
requirements:
  - cryptography
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Verifies as in a normal run (it only reads); passes when the file does not exist yet in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  path:
    description:
      - The file the signature is for, on the managed host.
    type: path
    required: true
  signature:
    description:
      - The content of the C(.minisig) file (four lines). Empty or omitted when the artifact is not signed.
      - Mutually exclusive with O(signature_path).
    type: str
  signature_path:
    description:
      - A C(.minisig) file on the managed host, instead of O(signature).
    type: path
  public_keys:
    description:
      - The trusted minisign public keys, each the base64 line of a C(minisign.pub) (or the whole file).
    type: list
    elements: str
    default: []
  required:
    description:
      - Fail when the signature is missing or no public key is given. When false, an unsigned file passes with
        RV(verified=false).
    type: bool
    default: true
seealso:
  - name: minisign
    description: The signature format.
    link: https://jedisct1.github.io/minisign/
"""

EXAMPLES = r"""
- name: Verify the release's signature
  payments.deploy.release_signature:
    path: /opt/payments/artifacts/payment-service-1.1.0.tar.gz
    signature: "{{ release_minisig.content }}"
    public_keys:
      - RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3
    required: true

- name: Verify against a signature file already on the host
  payments.deploy.release_signature:
    path: /srv/payment-service-1.1.0.tar.gz
    signature_path: /srv/payment-service-1.1.0.tar.gz.minisig
    public_keys: "{{ release_signature_public_keys }}"
"""

RETURN = r"""
verified:
  description: Whether a signature was verified (false only when none was required and none was checked).
  returned: always
  type: bool
  sample: true
key_id:
  description: The id of the key that made the signature, as minisign prints it.
  returned: when verified
  type: str
  sample: E7620F1842B4E81F
algorithm:
  description: C(Ed) (legacy, over the file) or C(ED) (over its BLAKE2b-512 digest).
  returned: when verified
  type: str
  sample: ED
trusted_comment:
  description: The signature's trusted comment (covered by the global signature).
  returned: when verified
  type: str
  sample: "timestamp:1700000000\tfile:payment-service-1.1.0.tar.gz\thashed"
msg:
  description: What was checked, in one sentence.
  returned: always
  type: str
  sample: payment-service-1.1.0.tar.gz is signed by key E7620F1842B4E81F
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.payments.deploy.plugins.module_utils import _minisign as minisign


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "signature": {"type": "str"},
            "signature_path": {"type": "path"},
            "public_keys": {"type": "list", "elements": "str", "default": []},
            "required": {"type": "bool", "default": True},
        },
        mutually_exclusive=[("signature", "signature_path")],
        supports_check_mode=True,
    )
    if not minisign.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=minisign.CRYPTOGRAPHY_IMPORT_ERROR)
    path, required = module.params["path"], module.params["required"]
    keys = [key for key in module.params["public_keys"] if key and key.strip()]
    # A malformed trusted key is a configuration error whether or not this artifact is signed.
    for number, key in enumerate(keys, 1):
        try:
            minisign.parse_public_key(key)
        except minisign.SignatureError as error:
            module.fail_json(msg=f"public_keys item {number} is not a minisign public key: {error}", verified=False)
    name = os.path.basename(path)
    signature = module.params["signature"] or ""
    if module.params["signature_path"]:
        try:
            with open(module.params["signature_path"], encoding="utf-8") as handle:
                signature = handle.read()
        except FileNotFoundError:
            signature = ""
        except (OSError, UnicodeDecodeError) as error:
            module.fail_json(msg=f"cannot read the signature {module.params['signature_path']}: {error}",
                             verified=False)
    if required and not keys:
        module.fail_json(msg=f"a signature of {name} is required, but no public key is configured "
                             "(release_signature_public_keys); nothing was unpacked", verified=False)
    if not signature.strip():
        if required:
            module.fail_json(msg=f"{name} has no signature (.minisig), and a signature is required; nothing was "
                                 "unpacked", verified=False)
        module.exit_json(changed=False, verified=False, msg=f"{name} is not signed (no signature required)")
    if not keys:
        module.exit_json(changed=False, verified=False,
                         msg=f"{name} is signed, but no public key is configured: the signature was not checked")
    if module.check_mode and not os.path.exists(path):
        module.exit_json(changed=False, verified=False, msg=f"{path} does not exist yet (check mode): not checked")
    try:
        result = minisign.verify_file(path, signature, keys)
    except minisign.SignatureError as error:
        module.fail_json(msg=f"the signature of {name} was refused: {error}; nothing was unpacked", verified=False)
    except OSError as error:
        module.fail_json(msg=f"cannot read {path}: {error}", verified=False)
    module.exit_json(changed=False, verified=True, key_id=result.key_id, algorithm=result.algorithm,
                     trusted_comment=result.trusted_comment, msg=f"{name} is signed by key {result.key_id}")


if __name__ == "__main__":
    main()

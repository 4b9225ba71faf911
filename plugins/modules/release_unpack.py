#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_unpack
short_description: Unpack a verified release archive safely, or re-check the release directory it made earlier
version_added: 0.1.0
description:
  - When O(dest) does not exist, checks every member of the archive O(src) before writing anything (one top directory,
    which is stripped; no absolute path, no C(..), no device or other special file, no symbolic link leaving the
    release, no hard link to anything but a regular file of the archive), unpacks it to C(.incoming-BASENAME) next to
    O(dest), checks that its C(manifest.json) names O(name) and O(version), writes the install record
    C(.release-record.json) last and moves the directory into place with one rename.
  - The archive's owners and modes are ignored. Everything belongs to O(owner) and O(group); directories get 0755,
    files 0644 (0755 when the archive marks them executable).
  - The record holds the artifact's sha256, the signing key id and the type, sha256, mode and owner of every entry.
  - When O(dest) exists, it is used only if its record names the artifact O(sha256) and every entry still matches the
    record; otherwise the module fails and changes nothing. Such a directory has to be moved aside by hand after a
    look at what changed, and the next run installs a fresh copy.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Re-checks an existing release directory, or checks the archive's members; unpacks nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  src:
    description:
      - The release archive (C(.tar.gz)) on the managed host, already verified against O(sha256).
    type: path
    required: true
  dest:
    description:
      - The release directory, for example C(/opt/payments/releases/1.1.0), an absolute path without C(.) or C(..)
        components or line breaks.
    type: path
    required: true
  sha256:
    description:
      - The verified sha256 of O(src). An existing O(dest) must have been unpacked from this artifact.
      - Before unpacking, O(src) is hashed again and must still have this sha256, which the install record keeps.
    type: str
    required: true
  signature_key_id:
    description:
      - The id of the key whose signature of O(src) was verified, kept in the record (up to 16 hex digits).
    type: str
  name:
    description:
      - The release name that the archive's C(manifest.json) must hold (one line, at most 255 characters).
    type: str
    required: true
  version:
    description:
      - The release version that the archive's C(manifest.json) must hold (one line, at most 255 characters).
    type: str
    required: true
  owner:
    description:
      - The user that owns the release files (the service only reads them). Changing to another user than the one the
        module runs as needs root.
    type: str
    default: root
  group:
    description:
      - The group of the release files.
    type: str
    default: root
"""

EXAMPLES = r"""
- name: Unpack release 1.1.0 (or re-check it)
  payments.deploy.release_unpack:
    src: /opt/payments/artifacts/payment-service-1.1.0.tar.gz
    dest: /opt/payments/releases/1.1.0
    sha256: "{{ release_expected_sha256 }}"
    name: payment-service
    version: 1.1.0
  register: release_unpacked
"""

RETURN = r"""
path:
  description: The release directory.
  returned: always
  type: str
  sample: /opt/payments/releases/1.1.0
entries:
  description: How many files, directories and links the release directory holds.
  returned: success
  type: int
  sample: 42
signature_key_id:
  description: The signing key id kept in the record (null when the artifact was not signed).
  returned: success
  type: str
  sample: E7620F1842B4E81F
manifest:
  description: The release's C(manifest.json) (empty in check mode before the first unpack).
  returned: success
  type: dict
  sample: {"name": "payment-service", "version": "1.1.0", "start_command": "python3 -m gunicorn ..."}
user:
  description: The user the module ran as on the managed host.
  returned: always
  type: str
  sample: root
msg:
  description: What was done, in one sentence.
  returned: always
  type: str
  sample: unpacked payment-service 1.1.0 to /opt/payments/releases/1.1.0 (42 entries)
"""

import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import tarfile
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils import _release_tree as tree

SHA256 = re.compile(r"[0-9a-f]{64}")
KEY_ID = re.compile(r"[0-9A-Fa-f]{1,16}")
MAX_LABEL = 255


def one_line(value: str) -> bool:
    """Non-blank printable text of sane length: no line break, U+2028, control character or NUL."""
    return bool(value.strip()) and value.isprintable() and len(value) <= MAX_LABEL


def dest_problem(dest: str) -> str | None:
    """Why ``dest`` cannot be a release directory (the staging directory is made next to it), or None."""
    if not dest.isprintable():
        return "holds a line break or control character"
    if not os.path.isabs(dest):
        return "is not an absolute path"
    parts = [part for part in dest.split("/") if part]
    if not parts:
        return "is the root directory"
    if any(part in (".", "..") for part in parts):
        return "holds '.' or '..'"
    return None


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(tree.CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(directory: str) -> dict[str, t.Any]:
    with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as handle:
        try:
            manifest = json.load(handle)
        except ValueError as error:
            raise ValueError(f"manifest.json is not JSON: {error}") from error
    if not isinstance(manifest, dict):
        raise ValueError("manifest.json is not a JSON object")
    return manifest


def owner_ids(module: AnsibleModule) -> tuple[int, int]:
    owner, group = module.params["owner"], module.params["group"]
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        module.fail_json(msg=f"the release files' owner {owner!r} does not exist; nothing was unpacked")
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        module.fail_json(msg=f"the release files' group {group!r} does not exist; nothing was unpacked")
    if os.geteuid() != 0 and uid != os.geteuid():
        module.fail_json(msg=f"only root can give the release files to {owner!r} (running as "
                             f"{pwd.getpwuid(os.geteuid()).pw_name}); use become or set the owner to this user")
    return uid, gid


def unpack(module: AnsibleModule, staging: str, uid: int, gid: int) -> tuple[int, dict[str, t.Any]]:
    """Unpack to staging, check its manifest, write the record, rename; staging is removed on any failure."""
    params = module.params
    if os.path.lexists(staging):
        shutil.rmtree(staging)
    try:
        tree.extract(params["src"], staging, uid, gid)
        manifest = read_manifest(staging)
        found = (manifest.get("name"), manifest.get("version"))
        if found != (params["name"], params["version"]):
            raise ValueError(f"the archive holds {found[0]} {found[1]}, not {params['name']} {params['version']}")
        record = tree.write_record(staging, params["sha256"], params["signature_key_id"], uid, gid)
        os.rename(staging, params["dest"])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return len(record["files"]), manifest


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "sha256": {"type": "str", "required": True},
            "signature_key_id": {"type": "str"},
            "name": {"type": "str", "required": True},
            "version": {"type": "str", "required": True},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
        },
        supports_check_mode=True,
    )
    params = module.params
    dest = params["dest"].rstrip("/")
    params["dest"] = dest
    user = pwd.getpwuid(os.geteuid()).pw_name
    result: dict[str, t.Any] = {"path": dest, "user": user}
    problem = dest_problem(params["dest"])
    if problem:
        module.fail_json(msg=f"dest {params['dest'][:200]!r} {problem}; nothing was unpacked", **result)
    sha256 = params["sha256"].strip().lower()
    if not SHA256.fullmatch(sha256):
        module.fail_json(msg=f"sha256 {params['sha256'][:200]!r} is not a sha256 hex digest; nothing was unpacked",
                         **result)
    params["sha256"] = sha256
    for option in ("name", "version"):
        if not one_line(params[option]):
            module.fail_json(msg=f"{option} {params[option][:200]!r} is not one line of printable text of at most "
                                 f"{MAX_LABEL} characters; nothing was unpacked", **result)
    key_id = params["signature_key_id"]
    if key_id is not None and not KEY_ID.fullmatch(key_id):
        module.fail_json(msg=f"signature_key_id {key_id[:200]!r} is not a minisign key id (up to 16 hex digits); "
                             "nothing was unpacked", **result)

    if os.path.lexists(dest):
        try:
            record = tree.check_installed(dest, sha256)
            manifest = read_manifest(dest)
        except tree.RefusedError as error:
            module.fail_json(msg=f"the release directory {dest} is refused: {error}. It was not used and nothing was "
                                 f"changed; look at it, move it aside (for example to {dest}.refused) and re-run to "
                                 "install a fresh copy", **result)
        except (OSError, ValueError) as error:
            module.fail_json(msg=f"the release directory {dest} has no readable manifest.json: {error}", **result)
        module.exit_json(changed=False, entries=len(record["files"]), signature_key_id=record.get("signature_key_id"),
                         manifest=manifest, msg=f"{dest} matches its install record", **result)

    staging = os.path.join(os.path.dirname(dest), f".incoming-{os.path.basename(dest)}")
    try:
        # The install record vouches for this sha256: the archive unpacked must be that artifact.
        if not module.check_mode or os.path.exists(params["src"]):
            found = file_sha256(params["src"])
            if found != sha256:
                module.fail_json(msg=f"src {params['src']} has sha256 {found}, not the verified sha256 {sha256}; "
                                     "nothing was unpacked", **result)
        if module.check_mode:
            if os.path.exists(params["src"]):
                with tarfile.open(params["src"], "r:*") as archive:
                    tree.check_members(archive)
            module.exit_json(changed=True, manifest={}, signature_key_id=params["signature_key_id"],
                             msg=f"would unpack {params['src']} to {dest}", **result)
        uid, gid = owner_ids(module)
        entries, manifest = unpack(module, staging, uid, gid)
    except tree.ArchiveError as error:
        module.fail_json(msg=f"{os.path.basename(params['src'])} was refused: {error}; nothing was unpacked", **result)
    except (OSError, ValueError, tarfile.TarError) as error:
        module.fail_json(msg=f"cannot unpack {params['src']} to {dest}: {error}; nothing was installed", **result)
    module.exit_json(changed=True, entries=entries, signature_key_id=params["signature_key_id"], manifest=manifest,
                     msg=f"unpacked {params['name']} {params['version']} to {dest} ({entries} entries)", **result)


if __name__ == "__main__":
    main()

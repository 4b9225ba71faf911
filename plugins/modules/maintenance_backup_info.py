#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: maintenance_backup_info
short_description: Check that the newest backup of a database is recent and that its manifest is authentic
version_added: 0.4.0
description:
  - Lists the backups that C(payments.deploy.pg_backup) wrote for O(database) in O(dest_dir) or an S3 bucket, takes
    the newest one (by the C(created_at) of its manifest) and checks that it is younger than O(max_age_hours), that
    its manifest's authentication code verifies under O(encryption_key) and that its encrypted object exists.
  - The module never fails on a finding; it lists them in RV(breaches) and the caller decides. It fails on bad options
    and when the store cannot be read.
  - The object itself is not decrypted (C(payments.deploy.pg_restore_backup) in check mode does that).
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.s3
attributes:
  check_mode:
    support: full
    details: The module only reads the backup store.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  database:
    description: The database whose backups are checked (the C(database) of their manifests).
    type: str
    required: true
  dest_dir:
    description: A local directory of backups; give it or O(s3_bucket).
    type: path
  max_age_hours:
    description: The newest backup must be younger than this many hours (above 0).
    type: float
    default: 26
  encryption_key:
    description: The backups' key (64 hexadecimal characters), used only to check the manifest's authentication code.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Check last night's backup in S3
  payments.deploy.maintenance_backup_info:
    database: payments
    s3_bucket: payments-backups
    s3_prefix: postgres
    encryption_key: "{{ vault_backup_encryption_key }}"
    max_age_hours: 26
"""

RETURN = r"""
newest:
  description: The newest backup (id, created_at, age_hours, location, authentic, object_present), or null.
  type: dict
  returned: success
count:
  description: How many backups of the database the store holds.
  type: int
  returned: success
breaches:
  description: One sentence per finding (no backup, too old, manifest not authentic, object missing).
  type: list
  elements: str
  returned: success
"""

import datetime
import math
import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.payments.deploy.plugins.module_utils import _backup_store as store_lib
from ansible_collections.payments.deploy.plugins.module_utils import _crypto as crypto


def created_epoch(created_at: str) -> float | None:
    try:
        stamp = datetime.datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp()


def main() -> None:
    spec = {"database": {"type": "str", "required": True}, "dest_dir": {"type": "path"},
            "max_age_hours": {"type": "float", "default": 26},
            "encryption_key": {"type": "str", "required": True, "no_log": True}}
    spec.update(store_lib.s3_argument_spec())
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_one_of=[("dest_dir", "s3_bucket")], mutually_exclusive=[("dest_dir", "s3_bucket")])
    params = module.params
    problems = []
    name_problem = store_lib.plain_name_problem("database", params["database"])
    if name_problem:
        problems.append(name_problem)
    if not (math.isfinite(params["max_age_hours"]) and params["max_age_hours"] > 0):
        problems.append(f"max_age_hours {params['max_age_hours']} must be a number of hours above 0")
    if params["dest_dir"] is not None:
        # type path expands ~ and variables but keeps a relative path relative to wherever the module runs
        if not os.path.isabs(params["dest_dir"]):
            problems.append(f"dest_dir {params['dest_dir']!r} must be an absolute path")
        elif not os.path.isdir(params["dest_dir"]):
            problems.append(f"dest_dir {params['dest_dir']} is not a directory: no backup store is there")
    try:
        key = crypto.parse_key(params["encryption_key"])
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        module.fail_json(msg="invalid options, the store was not read: " + "; ".join(problems), problems=problems)
    if not crypto.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=crypto.CRYPTOGRAPHY_IMPORT_ERROR)
    if params["s3_bucket"] and not store_lib.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=store_lib.BOTO3_IMPORT_ERROR)
    try:
        store = store_lib.S3Store(params) if params["s3_bucket"] else store_lib.LocalStore(params["dest_dir"])
        manifests = store.manifests(params["database"])
        newest, breaches = None, []
        if not manifests:
            breaches.append(f"no backup of {params['database']} in {store.describe()}")
        else:
            manifest = manifests[0]
            epoch = created_epoch(manifest["created_at"])
            age = None if epoch is None else (datetime.datetime.now(datetime.timezone.utc).timestamp() - epoch) / 3600
            newest = {"backup_id": manifest["backup_id"], "created_at": manifest["created_at"],
                      "age_hours": None if age is None else round(age, 2),
                      "location": store.location(store_lib.object_name(manifest["backup_id"])),
                      "authentic": crypto.manifest_authentic(key, manifest),
                      "object_present": store.exists(store_lib.object_name(manifest["backup_id"]))}
            if age is None or age >= params["max_age_hours"]:
                breaches.append(f"the newest backup {manifest['backup_id']} is {newest['age_hours']} h old, "
                                f"not younger than {params['max_age_hours']} h")
            if not newest["authentic"]:
                breaches.append(f"the manifest of backup {manifest['backup_id']} failed authentication with the given key")
            if not newest["object_present"]:
                breaches.append(f"the object of backup {manifest['backup_id']} is missing at {newest['location']}")
    except store_lib.StoreError as exc:
        module.fail_json(msg=f"the backup store could not be read: {exc}")
    module.exit_json(changed=False, newest=newest, count=len(manifests), breaches=breaches, store=store.describe())


if __name__ == "__main__":
    main()

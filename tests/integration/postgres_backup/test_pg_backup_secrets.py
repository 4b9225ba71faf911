"""No secret (database password, encryption key, AWS credentials) in any output at -vvvv, in argv, or in what is stored."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

from pg_backup_helpers import ansible_command, ansible_env
from pg_backup_servers import MotoS3, PostgresCluster


def run_verbose(collections_dir: Path, module: str, args: dict, secret_vars: Path, *flags: str) -> tuple[int, str]:
    """The module through the ``ansible`` CLI with the default (human) output at -vvvv; returns exit status and all output.

    Secrets come from a variables file, as from a vault: at -vvvv the ``ansible`` CLI itself echoes its ``-a`` text.
    The module's arguments are injected into its result (``invocation``), as some setups do, to check they are masked there too.
    """
    env = ansible_env(collections_dir, callback="ansible.builtin.default", extra={"ANSIBLE_INJECT_INVOCATION": "true"})
    proc = subprocess.run(ansible_command(module, args, "-vvvv", "--diff", "-e", f"@{secret_vars}", *flags), capture_output=True,
                          text=True, check=False, timeout=600, env=env, cwd=collections_dir)
    return proc.returncode, proc.stdout + proc.stderr


def test_no_secret_in_any_output_at_vvvv(cluster: PostgresCluster, database: str, workdir: Path, key: str, s3_server: MotoS3,
                                         bucket: str, collections_dir: Path) -> None:
    access_key, secret_key = "AKIA" + secrets.token_hex(8).upper(), "s3secret-" + secrets.token_hex(16)
    forbidden = {"login_password": cluster.password, "encryption_key": key, "aws_access_key_id": access_key,
                 "aws_secret_access_key": secret_key}
    secret_vars = workdir / "secrets.json"
    secret_vars.write_text(json.dumps({f"secret_{name}": value for name, value in forbidden.items()}
                                      | {"secret_wrong_key": os.urandom(32).hex(), "secret_bad_password": cluster.password + "x"}))
    login = {**cluster.login(), "login_password": "{{ secret_login_password }}"}
    key_arg = "{{ secret_encryption_key }}"
    s3 = {"s3_bucket": bucket, "s3_prefix": "p", "s3_endpoint_url": s3_server.endpoint, "s3_region": "us-east-1",
          "aws_access_key_id": "{{ secret_aws_access_key_id }}", "aws_secret_access_key": "{{ secret_aws_secret_access_key }}"}
    dest = workdir / "dest"
    outputs = {}

    code, outputs["backup"] = run_verbose(collections_dir, "pg_backup", {**login, "db": database, "encryption_key": key_arg,
                                                                         "dest_dir": str(dest), "verify_restore": True, "keep": 3, **s3},
                                          secret_vars)
    assert code == 0, outputs["backup"]
    assert '"backup_id": "' in outputs["backup"] and '"commands": [' in outputs["backup"]
    assert '"invocation": {' in outputs["backup"] and "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in outputs["backup"], "arguments shown, masked"
    backup_id = json.loads((next(dest.glob("*.manifest.json"))).read_text())["backup_id"]

    code, outputs["backup check"] = run_verbose(collections_dir, "pg_backup", {**login, "db": database, "encryption_key": key_arg,
                                                                               "dest_dir": str(dest), **s3}, secret_vars, "--check")
    assert code == 0, outputs["backup check"]
    code, outputs["restore"] = run_verbose(collections_dir, "pg_restore_backup", {**login, "backup_id": backup_id, "target_db": database,
                                                                                  "encryption_key": key_arg, **s3}, secret_vars)
    assert code == 0, outputs["restore"]
    assert f"{database}_before_restore_" in outputs["restore"]
    code, outputs["restore wrong key"] = run_verbose(collections_dir, "pg_restore_backup", {**login, "backup_id": backup_id,
                                                                                            "target_db": database, "src_dir": str(dest),
                                                                                            "encryption_key": "{{ secret_wrong_key }}"},
                                                     secret_vars)
    assert code != 0 and "wrong key" in outputs["restore wrong key"]
    code, outputs["backup bad password"] = run_verbose(collections_dir, "pg_backup", {**login, "db": database,
                                                                                      "login_password": "{{ secret_bad_password }}",
                                                                                      "encryption_key": key_arg, "dest_dir": str(dest)},
                                                       secret_vars)
    assert code != 0 and "password authentication failed" in outputs["backup bad password"]

    forbidden.update(wrong_key=json.loads(secret_vars.read_text())["secret_wrong_key"], bad_password=cluster.password + "x")
    for run, output in outputs.items():
        for name, value in forbidden.items():
            assert value not in output, f"{name} appears in the output of {run}"

    stored = b"".join(p.read_bytes() for p in dest.iterdir() if p.name != "secrets.json")
    client = s3_server.client()
    for item in client.list_objects_v2(Bucket=bucket)["Contents"]:
        stored += client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    for name, value in forbidden.items():
        assert value.encode() not in stored, f"{name} is stored with the backup"
    assert bytes.fromhex(key) not in stored

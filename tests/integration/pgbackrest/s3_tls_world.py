"""An S3 endpoint over TLS on loopback: moto_server (plain HTTP, with authentication on) behind HAProxy terminating TLS
with a certificate from a throw-away CA, for the host name ``localhost``.

moto checks every request's signature once its first ``SETUP_ACTIONS`` requests (the IAM user, its key, its policy and
the bucket, made here with boto3) have passed: a wrong secret key is refused as AWS refuses it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import typing as t
from pathlib import Path

from loopback_ports import free_port
from unit.tls_servers import Pki

HAPROXY = Path("/usr/sbin/haproxy")
HOST = "localhost"
REGION = "eu-central-1"
SETUP_ACTIONS = 4
ALLOW_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} does not listen on {port}")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class S3TlsWorld:
    """moto on ``moto_port`` (HTTP), HAProxy on ``port`` (TLS for ``localhost``), a bucket and a key allowed to use it;
    HAProxy also on ``wrong_name_port``, with a certificate from the same CA for another host name only."""

    def __init__(self, directory: Path, bucket: str = "payments-pgbackrest") -> None:
        self.directory = directory
        self.bucket = bucket
        self.moto_port = free_port()
        self.port = free_port()
        self.wrong_name_port = free_port()
        self.pki = Pki(directory / "pki", ca_name="Payments S3 Test CA")
        # pgBackRest reads the CA file as the cluster's OS user
        for path in (directory, self.pki.directory, self.pki.ca_path):
            path.chmod(0o755 if path.is_dir() else 0o644)
        self.ca_file = self.pki.ca_path
        self.key = ""
        self.key_secret = ""
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        server = Path(sys.executable).with_name("moto_server")
        env = {"PATH": "/usr/bin:/bin", "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}
        moto = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(self.moto_port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(moto)
        wait_for_port(self.moto_port, moto, "moto_server")
        leaf = self.pki.issue(HOST, [HOST, "127.0.0.1"], file_name="s3")
        bundle = self.directory / "s3-bundle.pem"
        bundle.write_bytes(leaf.cert_path.read_bytes() + leaf.key_path.read_bytes())
        other = self.pki.issue("s3.other.invalid", ["s3.other.invalid"], file_name="s3-other-name")
        other_bundle = self.directory / "s3-other-name-bundle.pem"
        other_bundle.write_bytes(other.cert_path.read_bytes() + other.key_path.read_bytes())
        config = self.directory / "haproxy.cfg"
        config.write_text("\n".join([
            "global", "  maxconn 256", "defaults", "  mode tcp", "  timeout connect 5s", "  timeout client 60s", "  timeout server 60s",
            "frontend s3_tls", f"  bind 127.0.0.1:{self.port} ssl crt {bundle}", "  default_backend moto",
            "frontend s3_tls_other_name", f"  bind 127.0.0.1:{self.wrong_name_port} ssl crt {other_bundle}", "  default_backend moto",
            "backend moto", f"  server moto 127.0.0.1:{self.moto_port}", ""]), encoding="utf-8")
        haproxy = subprocess.Popen([str(HAPROXY), "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(haproxy)
        wait_for_port(self.port, haproxy, "haproxy")
        wait_for_port(self.wrong_name_port, haproxy, "haproxy")
        self.set_up_account()

    def set_up_account(self) -> None:
        """The first SETUP_ACTIONS requests, unauthenticated: a user, its key, its policy, the bucket."""
        iam = self.client("iam", "any", "any")
        iam.create_user(UserName="pgbackrest")
        key = iam.create_access_key(UserName="pgbackrest")["AccessKey"]
        iam.put_user_policy(UserName="pgbackrest", PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
        self.key, self.key_secret = key["AccessKeyId"], key["SecretAccessKey"]
        self.s3().create_bucket(Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})

    def client(self, service: str, key: str, secret: str) -> t.Any:
        import boto3  # pylint: disable=import-outside-toplevel

        return boto3.client(service, endpoint_url=f"http://127.0.0.1:{self.moto_port}", region_name=REGION,
                            aws_access_key_id=key, aws_secret_access_key=secret)

    def s3(self) -> t.Any:
        """boto3 on moto directly (plain HTTP), with the key pgBackRest uses."""
        return self.client("s3", self.key, self.key_secret)

    def objects(self, bucket: str | None = None) -> dict[str, bytes]:
        """Every object of the bucket: key -> bytes."""
        s3 = self.s3()
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket or self.bucket) for o in page.get("Contents", [])]
        return {key: s3.get_object(Bucket=bucket or self.bucket, Key=key)["Body"].read() for key in keys}

    def role_vars(self) -> dict[str, t.Any]:
        """The payments.deploy.pgbackrest S3 variables for this endpoint."""
        return {"pgbackrest_repo_type": "s3", "pgbackrest_s3_bucket": self.bucket, "pgbackrest_s3_endpoint": HOST,
                "pgbackrest_s3_port": self.port, "pgbackrest_s3_region": REGION, "pgbackrest_s3_uri_style": "path",
                "pgbackrest_s3_ca_file": str(self.ca_file), "pgbackrest_s3_key": self.key, "pgbackrest_s3_key_secret": self.key_secret}

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process)

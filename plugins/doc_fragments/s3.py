# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options of the modules that keep backups in S3 (or an S3-compatible server)."""

    DOCUMENTATION = r"""
options:
  s3_bucket:
    description:
      - Name of the S3 bucket. No S3 is used when omitted.
      - The bucket must exist; the module checks it can reach it before anything runs.
    type: str
  s3_prefix:
    description:
      - Key prefix (a "directory") of the backups in the bucket, without leading or trailing C(/).
    type: str
    default: ""
  s3_endpoint_url:
    description:
      - URL of an S3-compatible server (MinIO, Ceph, a test server). AWS's regional endpoint when omitted.
    type: str
  s3_region:
    description:
      - AWS region of the bucket. The AWS SDK's usual sources (C(AWS_REGION), config files) when omitted.
    type: str
  aws_access_key_id:
    description:
      - AWS access key id. Falls back to the C(AWS_ACCESS_KEY_ID) environment variable, then to the AWS SDK's other sources
        (config files, instance role).
    type: str
  aws_secret_access_key:
    description:
      - AWS secret access key. Falls back to the C(AWS_SECRET_ACCESS_KEY) environment variable, then to the AWS SDK's other sources.
    type: str
  aws_session_token:
    description:
      - AWS session token of temporary credentials. Falls back to the C(AWS_SESSION_TOKEN) environment variable.
    type: str
  s3_sse:
    description:
      - Server-side encryption asked of S3 for every object written (on top of the client-side encryption of the backup).
      - V(none) asks for none (the bucket's default encryption still applies).
    type: str
    default: AES256
    choices: [AES256, aws:kms, none]
  s3_sse_kms_key_id:
    description:
      - KMS key for O(s3_sse=aws:kms); the bucket's default KMS key when omitted.
    type: str
  s3_part_size_mb:
    description:
      - Size in MiB of the parts of the multipart upload (at least 5). Two parts are held in memory at most.
    type: int
    default: 16
requirements:
  - boto3 on the target host when S3 is used
"""

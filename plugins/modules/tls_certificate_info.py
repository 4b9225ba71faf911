#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tls_certificate_info
short_description: Check the certificate a TLS endpoint serves (chain, name, expiry, protocol version)
version_added: 0.1.0
description:
  - Connects to O(host) on O(port), sends O(server_name) as SNI and verifies the certificate chain the server presents
    against O(ca_path) (the system CA store when omitted). Reports the certificate's subject, issuer, names, validity,
    serial number and SHA-256 fingerprint, and the protocol version and cipher negotiated.
  - "By default it fails, naming O(host):O(port) and every reason, when the chain does not verify, when the certificate
    does not match O(server_name), when it is expired or not yet valid, when it expires within O(min_days_valid) days
    (the message gives the date and the days left), or when the server only speaks a protocol version below
    O(min_tls_version). A refused connection, a timeout, a server that does not offer TLS or a failed handshake fail
    with a message saying so."
  - With O(fail_on_problems=false) it returns the same facts with the reasons in RV(failures) instead, for a report or
    for a caller that collects the problems of several endpoints and fails once. Bad options always fail, before any
    connection is made.
  - With O(starttls=postgres) it first sends PostgreSQL's C(SSLRequest) and starts TLS after the server's C(S), so it
    checks the certificate of a PostgreSQL server too.
  - Uses the Python standard library only (C(ssl)); the certificate is read from the DER bytes the server sent, so its
    details are reported even when the chain does not verify.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  host:
    description:
      - The host name or IP address to connect to.
    type: str
    required: true
  port:
    description:
      - The TCP port, from 1 to 65535.
    type: int
    default: 443
  server_name:
    description:
      - The name sent as SNI and checked against the certificate's subjectAltName. Defaults to O(host).
      - An IP address is checked against the certificate's IP address entries and is not sent as SNI.
    type: str
  ca_path:
    description:
      - The CA certificates the chain must verify to, on the machine the module runs on; a PEM file (a bundle), or a
        directory prepared with C(openssl rehash).
      - When omitted, the system's CA store.
    type: path
  min_days_valid:
    description:
      - Fail when the certificate expires in fewer than this many days. V(0) only refuses an expired certificate.
        From 0 to 36500.
    type: int
    default: 30
  min_tls_version:
    description:
      - The oldest protocol version acceptable. The handshake offers this version and newer ones only; a server that
        only speaks older ones fails the check, and RV(protocol) then says what it speaks.
    type: str
    choices: [TLSv1.2, TLSv1.3]
    default: TLSv1.2
  timeout:
    description:
      - Seconds the connection and each handshake may take (a finite number above 0, at most 300).
    type: float
    default: 10
  starttls:
    description:
      - V(postgres) sends PostgreSQL's C(SSLRequest) (8 bytes) and starts TLS after the server answers C(S); an answer
        C(N) fails with "the server does not offer TLS".
      - V(none) starts TLS at once.
    type: str
    choices: [none, postgres]
    default: none
  fail_on_problems:
    description:
      - Whether to fail when RV(failures) is not empty.
      - V(false) returns the facts and RV(failures) without failing, for reporting; bad options still fail.
    type: bool
    default: true
notes:
  - The chain is verified as OpenSSL verifies it by default (as libpq and most clients do); the name with the rules of
    Python's C(ssl) module (subjectAltName only, never the subject's CN; a wildcard only as the whole left-most label).
  - When the chain fails only on validity dates, the module verifies it again without the dates, so that
    RV(chain_verified) says whether the chain leads to a trusted CA and the dates are reported on their own.
  - To learn what an outdated server speaks, a second handshake accepts every protocol version and cipher the local
    OpenSSL still offers. An OpenSSL built or configured without TLS 1.0 and 1.1 reports only the failed handshake.
  - The module runs where the task runs; delegate it to the host whose view of the endpoint matters.
    O(ca_path) is a path on that host.
seealso:
  - name: PostgreSQL SSL session encryption
    description: The SSLRequest message that O(starttls=postgres) sends.
    link: https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-SSL
  - module: community.crypto.get_certificate
"""

EXAMPLES = r"""
- name: The payment frontend serves a certificate valid for 30 days more, from the internal CA
  payments.deploy.tls_certificate_info:
    host: pay.example.com
    ca_path: /etc/ssl/certs/payments-ca.pem

- name: The database server's certificate (PostgreSQL's SSLRequest first), TLS 1.3 only
  payments.deploy.tls_certificate_info:
    host: 10.0.3.15
    port: 5432
    server_name: db.internal.example.com
    starttls: postgres
    ca_path: /etc/payments/db-ca.pem
    min_tls_version: TLSv1.3
    min_days_valid: 14
  delegate_to: app1.internal.example.com

- name: Only report
  payments.deploy.tls_certificate_info:
    host: pay.example.com
    fail_on_problems: false
  register: cert

- name: Show it
  ansible.builtin.debug:
    msg: "{{ cert.subject }} expires in {{ cert.days_remaining }} days; problems: {{ cert.failures }}"
"""

RETURN = r"""
verified:
  description: Whether a client trusting O(ca_path) would accept the certificate for O(server_name) now (the chain
    verifies, the name matches, the certificate is within its validity dates). O(min_days_valid) and O(min_tls_version)
    are not part of it.
  returned: always
  type: bool
  sample: true
chain_verified:
  description: Whether the chain leads to a CA of O(ca_path) (or the system store); the server certificate's own dates
    are reported apart. V(null) when no certificate was received.
  returned: always
  type: bool
  sample: true
hostname_matches:
  description: Whether the certificate's subjectAltName matches O(server_name); V(null) when no certificate was received.
  returned: always
  type: bool
  sample: true
subject:
  description: The certificate's subject (RFC 4514, most specific first); V(null) when no certificate was received.
  returned: always
  type: str
  sample: CN=pay.example.com,O=Example Payments
issuer:
  description: The certificate's issuer (RFC 4514); V(null) when no certificate was received.
  returned: always
  type: str
  sample: CN=Example Payments CA,O=Example Payments
san:
  description: The subjectAltName entries, each with its kind (C(DNS), C(IP), C(email), C(URI)).
  returned: always
  type: list
  elements: str
  sample: ["DNS:pay.example.com", "IP:10.0.1.10"]
not_before:
  description: The start of the certificate's validity, in UTC (ISO 8601).
  returned: always
  type: str
  sample: "2026-01-01T00:00:00Z"
not_after:
  description: The end of the certificate's validity, in UTC (ISO 8601).
  returned: always
  type: str
  sample: "2026-12-31T23:59:59Z"
days_remaining:
  description: Whole days until RV(not_after), rounded down; negative once expired.
  returned: always
  type: int
  sample: 212
serial:
  description: The serial number in hexadecimal, as C(openssl x509 -serial) prints it.
  returned: always
  type: str
  sample: 0A3F19C2
sha256_fingerprint:
  description: The SHA-256 fingerprint of the certificate (DER), colon-separated upper-case hexadecimal.
  returned: always
  type: str
  sample: "3A:5F:...:9C"
protocol:
  description: The protocol version negotiated; when the server only speaks versions below O(min_tls_version), the
    newest one it speaks.
  returned: always
  type: str
  sample: TLSv1.3
cipher:
  description: The cipher suite negotiated.
  returned: always
  type: str
  sample: TLS_AES_256_GCM_SHA384
failures:
  description: Every reason the certificate or the endpoint fails the check, as sentences; empty when it passes.
  returned: always
  type: list
  elements: str
  sample: ["the certificate expires on 2026-06-01 12:00 UTC, in 9 days: less than min_days_valid (30)"]
"""

import datetime
import hashlib
import math
import os
import re
import ssl
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.payments.deploy.plugins.module_utils._numbers import number_problems
from ansible_collections.payments.deploy.plugins.module_utils._tls import (
    PROTOCOL_RANK,
    Endpoint,
    EndpointError,
    HandshakeError,
    Inspection,
    inspect,
    load_trust,
    name_matches,
    parse_certificate,
)

MAX_DAYS = 36500
PLAIN_NAME = re.compile(r"[^\s\x00-\x1f\x7f-\x9f\u2028\u2029/@?#]{1,253}")
FACTS = ("subject", "issuer", "san", "not_before", "not_after", "days_remaining", "serial", "sha256_fingerprint",
         "protocol", "cipher", "chain_verified", "hostname_matches")


def input_problems(params: dict[str, t.Any]) -> list[str]:
    """Every problem with the options, so that one run names them all."""
    problems = []
    for option in ("host", "server_name"):
        value = params[option]
        if value is not None and (not PLAIN_NAME.fullmatch(value) or value.startswith(".")):
            problems.append(f"{option} must be a host name or IP address without spaces, control characters or / @ ? # (got {value!r:.200})")
    if not 1 <= params["port"] <= 65535:
        problems.append(f"port must be from 1 to 65535 (got {params['port']})")
    if not 0 <= params["min_days_valid"] <= MAX_DAYS:
        problems.append(f"min_days_valid must be a whole number of days from 0 to {MAX_DAYS} (got {params['min_days_valid']})")
    problems += number_problems(params, {"timeout": {"maximum": 300.0}})
    ca_path = params["ca_path"]
    if ca_path is not None:
        problems += ca_path_problems(ca_path)
    return problems


def ca_path_problems(ca_path: str) -> list[str]:
    if not os.path.exists(ca_path):
        return [f"ca_path {ca_path} does not exist (on the host the module runs on)"]
    if not os.path.isdir(ca_path) and not os.path.isfile(ca_path):
        return [f"ca_path {ca_path} is neither a file nor a directory"]
    if not os.access(ca_path, os.R_OK):
        return [f"ca_path {ca_path} cannot be read"]
    try:
        load_trust(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), ca_path)
    except (ssl.SSLError, OSError) as exc:
        return [f"ca_path {ca_path} holds no CA certificate OpenSSL can load (PEM expected): {exc}"]
    return []


def utc_text(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def days_text(days: int) -> str:
    return "1 day" if days == 1 else f"{days} days"


def check(params: dict[str, t.Any], endpoint: Endpoint, found: Inspection, now: datetime.datetime) -> tuple[dict[str, t.Any], list[str]]:
    """The facts of an endpoint whose handshake succeeded, and every reason it fails the check."""
    handshake = found.handshake
    failures: list[str] = []
    facts: dict[str, t.Any] = {"protocol": handshake.protocol, "cipher": handshake.cipher}
    min_version = params["min_tls_version"]
    if found.legacy_only:
        failures.append(f"the server speaks at most {handshake.protocol}, below min_tls_version {min_version} "
                        f"(a {min_version} handshake fails: {found.modern_error})")
    elif PROTOCOL_RANK.get(handshake.protocol, 0) < PROTOCOL_RANK[min_version]:
        failures.append(f"the server negotiated {handshake.protocol}, below min_tls_version {min_version}")
    if not handshake.der:
        return facts, failures + ["the server sent no certificate"]
    try:
        cert = parse_certificate(handshake.der)
    except ValueError as exc:
        return facts, failures + [f"the server's certificate cannot be read: {exc}"]
    digest = hashlib.sha256(handshake.der).hexdigest().upper()
    left = cert.not_after - now
    facts.update(subject=cert.subject, issuer=cert.issuer, san=cert.san, serial=cert.serial,
                 not_before=cert.not_before.strftime("%Y-%m-%dT%H:%M:%SZ"), not_after=cert.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 days_remaining=math.floor(left.total_seconds() / 86400),
                 sha256_fingerprint=":".join(digest[i:i + 2] for i in range(0, len(digest), 2)))
    in_dates = cert.not_before <= now < cert.not_after
    trust = f"ca_path {params['ca_path']}" if params["ca_path"] else "the system CA store"
    facts["chain_verified"] = found.chain_error is None
    if found.chain_error is not None:
        failures.append(f"the certificate chain does not verify against {trust}: {found.chain_error}")
    elif found.time_error is not None and in_dates:
        facts["chain_verified"] = False
        failures.append(f"a CA certificate of the chain is outside its validity dates: {found.time_error}")
    facts["hostname_matches"] = name_matches(endpoint.server_name, cert.san)
    if not facts["hostname_matches"]:
        names = ", ".join(cert.san) if cert.san else "none: it has no subjectAltName, and clients ignore the subject's CN"
        failures.append(f"the certificate does not match the name {endpoint.server_name} (its names: {names})")
    if cert.not_before > now:
        failures.append(f"the certificate is not valid before {utc_text(cert.not_before)}, "
                        f"in {days_text(math.ceil((cert.not_before - now).total_seconds() / 86400))} (is a clock wrong?)")
    if cert.not_after <= now:
        ago = (now - cert.not_after).days
        failures.append(f"the certificate expired on {utc_text(cert.not_after)} "
                        f"({days_text(ago) + ' ago' if ago else 'less than a day ago'})")
    elif left < datetime.timedelta(days=params["min_days_valid"]):
        failures.append(f"the certificate expires on {utc_text(cert.not_after)}, in {days_text(facts['days_remaining'])}: "
                        f"less than min_days_valid ({params['min_days_valid']})")
    facts["verified"] = bool(facts["chain_verified"] and facts["hostname_matches"] and in_dates)
    return facts, failures


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "port": {"type": "int", "default": 443},
            "server_name": {"type": "str"},
            "ca_path": {"type": "path"},
            "min_days_valid": {"type": "int", "default": 30},
            "min_tls_version": {"type": "str", "default": "TLSv1.2", "choices": ["TLSv1.2", "TLSv1.3"]},
            "timeout": {"type": "float", "default": 10},
            "starttls": {"type": "str", "default": "none", "choices": ["none", "postgres"]},
            "fail_on_problems": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    problems = input_problems(params)
    if problems:
        module.fail_json(msg="; ".join(problems))
    host = params["host"].strip("[]")
    server_name = (params["server_name"] or host).strip("[]")
    endpoint = Endpoint(host, params["port"], server_name, params["ca_path"], params["timeout"], params["starttls"])

    result: dict[str, t.Any] = dict.fromkeys(FACTS)
    result.update(san=[], verified=False)
    try:
        found = inspect(endpoint, params["min_tls_version"])
    except EndpointError as exc:
        failures = [str(exc)]
    except HandshakeError as exc:
        failures = [f"the TLS handshake with {endpoint.where} failed: {exc}"]
    else:
        facts, failures = check(params, endpoint, found, datetime.datetime.now(datetime.timezone.utc))
        result.update(facts)

    if failures and params["fail_on_problems"]:
        name = "" if server_name == host else f" (name {server_name})"
        module.fail_json(msg=f"TLS certificate check of {endpoint.where}{name} failed: {'; '.join(failures)}", failures=failures, **result)
    module.exit_json(changed=False, failures=failures, **result)


if __name__ == "__main__":
    main()

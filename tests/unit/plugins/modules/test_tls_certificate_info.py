"""Unit tests of tls_certificate_info against real TLS servers on 127.0.0.1, with certificates made by the tests."""

from __future__ import annotations

import datetime
import hashlib
import json
import socket
import ssl
import typing as t
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ansible.module_utils.testing import patch_module_args
from loopback_ports import free_port
from tls_servers import DAY, Issued, Pki, SilentServer, TlsServer, utcnow

from ansible_collections.payments.deploy.plugins.module_utils import _tls
from ansible_collections.payments.deploy.plugins.modules import tls_certificate_info

NAME = "pay.lab.test"


def run(capsys: pytest.CaptureFixture[str], check: bool = False, **args: t.Any) -> dict[str, t.Any]:
    if check:
        args["_ansible_check_mode"] = True
    with patch_module_args({"timeout": 5, **args}), pytest.raises(SystemExit):
        tls_certificate_info.main()
    result: dict[str, t.Any] = json.loads(capsys.readouterr().out)
    return result


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def good(pki: Pki) -> Issued:
    return pki.issue(NAME, [NAME, "127.0.0.1"], days=90)


@pytest.fixture
def serve() -> t.Iterator[t.Callable[..., TlsServer]]:
    servers: list[TlsServer] = []

    def start(issued: Issued, cert_path: Path | None = None, **options: t.Any) -> TlsServer:
        server = TlsServer(cert_path or issued.cert_path, issued.key_path, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def hex_serial(cert: x509.Certificate) -> str:
    text = format(cert.serial_number, "X")
    return "0" * (len(text) % 2) + text


def test_good_certificate(pki: Pki, good: Issued, serve: t.Callable[..., TlsServer], capsys: pytest.CaptureFixture[str]) -> None:
    server = serve(good)
    result = run(capsys, check=True, host="127.0.0.1", port=server.port, server_name=NAME, ca_path=str(pki.ca_path))
    assert not result.get("failed"), result
    assert result["changed"] is False and result["failures"] == []
    assert result["verified"] is result["chain_verified"] is result["hostname_matches"] is True
    assert result["days_remaining"] in (89, 90)
    assert result["subject"] == good.cert.subject.rfc4514_string() == f"O=Payments Lab,CN={NAME}"
    assert result["issuer"] == pki.ca.cert.subject.rfc4514_string()
    assert result["san"] == [f"DNS:{NAME}", "IP:127.0.0.1"]
    assert result["serial"] == hex_serial(good.cert)
    der = good.cert.public_bytes(serialization.Encoding.DER)
    assert result["sha256_fingerprint"].replace(":", "") == hashlib.sha256(der).hexdigest().upper()
    assert result["not_after"] == good.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert result["not_before"] == good.cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert result["protocol"] == "TLSv1.3" and result["cipher"].startswith("TLS_")
    assert server.connections == 1, "one handshake when everything verifies"


def test_the_ip_address_as_the_name(pki: Pki, good: Issued, serve: t.Callable[..., TlsServer],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, host="127.0.0.1", port=serve(good).port, ca_path=str(pki.ca_path))
    assert not result.get("failed") and result["hostname_matches"] is True


def test_expired_certificate(pki: Pki, serve: t.Callable[..., TlsServer], capsys: pytest.CaptureFixture[str]) -> None:
    expired = pki.issue(NAME, [NAME], not_before=utcnow() - 100 * DAY, days=97)
    port = serve(expired).port
    result = run(capsys, host="127.0.0.1", port=port, server_name=NAME, ca_path=str(pki.ca_path))
    date = expired.cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    assert result["failed"] is True
    assert result["msg"] == f"TLS certificate check of 127.0.0.1:{port} (name {NAME}) failed: the certificate expired on {date} (2 days ago)"
    assert result["chain_verified"] is True and result["verified"] is False
    assert result["days_remaining"] == -3


def test_certificate_expiring_within_min_days_valid(pki: Pki, serve: t.Callable[..., TlsServer],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    soon = pki.issue(NAME, [NAME], days=10)
    port = serve(soon).port
    date = soon.cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    result = run(capsys, host="127.0.0.1", port=port, server_name=NAME, ca_path=str(pki.ca_path))
    assert result["failed"] is True and result["verified"] is True
    assert result["days_remaining"] == 9, "whole days left, rounded down"
    assert result["failures"] == [f"the certificate expires on {date}, in 9 days: less than min_days_valid (30)"]
    assert f"127.0.0.1:{port}" in result["msg"]
    assert not run(capsys, host="127.0.0.1", port=port, server_name=NAME, ca_path=str(pki.ca_path), min_days_valid=9).get("failed")


def test_certificate_not_yet_valid(pki: Pki, serve: t.Callable[..., TlsServer], capsys: pytest.CaptureFixture[str]) -> None:
    future = pki.issue(NAME, [NAME], not_before=utcnow() + 2 * DAY, days=90)
    result = run(capsys, host="127.0.0.1", port=serve(future).port, server_name=NAME, ca_path=str(pki.ca_path))
    assert result["failed"] is True and result["chain_verified"] is True and result["verified"] is False
    assert "the certificate is not valid before" in result["msg"] and "in 2 days (is a clock wrong?)" in result["msg"]


def test_wrong_host(pki: Pki, serve: t.Callable[..., TlsServer], capsys: pytest.CaptureFixture[str]) -> None:
    other = pki.issue("other.lab.test", ["other.lab.test"])
    result = run(capsys, host="127.0.0.1", port=serve(other).port, server_name=NAME, ca_path=str(pki.ca_path))
    assert result["failed"] is True and result["chain_verified"] is True and result["hostname_matches"] is False
    assert result["failures"] == [f"the certificate does not match the name {NAME} (its names: DNS:other.lab.test)"]


def test_certificate_without_san(pki: Pki, serve: t.Callable[..., TlsServer], capsys: pytest.CaptureFixture[str]) -> None:
    bare = pki.issue(NAME, [])
    result = run(capsys, host="127.0.0.1", port=serve(bare).port, server_name=NAME, ca_path=str(pki.ca_path))
    assert result["failed"] is True and result["hostname_matches"] is False
    assert "it has no subjectAltName, and clients ignore the subject's CN" in result["msg"]


def test_self_signed_certificate_not_from_the_ca(pki: Pki, serve: t.Callable[..., TlsServer],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rogue = pki.issue(NAME, [NAME, "127.0.0.1"], self_signed=True)
    server = serve(rogue)
    result = run(capsys, host="127.0.0.1", port=server.port, server_name=NAME, ca_path=str(pki.ca_path))
    assert result["failed"] is True and result["chain_verified"] is False and result["verified"] is False
    assert result["failures"] == [f"the certificate chain does not verify against ca_path {pki.ca_path}: self-signed certificate"]
    assert result["hostname_matches"] is True and result["subject"] == result["issuer"] == f"O=Payments Lab,CN={NAME}"
    assert result["serial"] == hex_serial(rogue.cert)


def test_the_system_store_does_not_know_the_test_ca(good: Issued, serve: t.Callable[..., TlsServer],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, host="127.0.0.1", port=serve(good).port, server_name=NAME)
    assert result["failed"] is True and result["chain_verified"] is False
    assert "does not verify against the system CA store: unable to get local issuer certificate" in result["msg"]


def test_expired_intermediate_ca(pki: Pki, serve: t.Callable[..., TlsServer], capsys: pytest.CaptureFixture[str]) -> None:
    intermediate = pki.issue("Payments Lab Old Intermediate", [], ca=True, not_before=utcnow() - 100 * DAY, days=50)
    leaf = pki.issue(NAME, [NAME], issuer=intermediate, not_before=utcnow() - DAY, days=30)
    result = run(capsys, host="127.0.0.1", port=serve(leaf, cert_path=pki.chain_file(leaf, intermediate)).port,
                 server_name=NAME, ca_path=str(pki.ca_path), min_days_valid=0)
    assert result["failed"] is True and result["chain_verified"] is False and result["verified"] is False
    assert result["failures"] == ["a CA certificate of the chain is outside its validity dates: certificate has expired"]


def test_fail_on_problems_false_reports_every_failure(pki: Pki, serve: t.Callable[..., TlsServer],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = pki.issue("other.lab.test", ["other.lab.test"], not_before=utcnow() - 100 * DAY, days=90, self_signed=True)
    result = run(capsys, host="127.0.0.1", port=serve(bad).port, server_name=NAME, ca_path=str(pki.ca_path),
                 fail_on_problems=False)
    assert not result.get("failed") and result["changed"] is False and result["verified"] is False
    assert len(result["failures"]) == 3, result["failures"]
    assert result["failures"][0] == f"the certificate chain does not verify against ca_path {pki.ca_path}: self-signed certificate"
    assert result["failures"][1].startswith(f"the certificate does not match the name {NAME} ")
    assert result["failures"][2].startswith("the certificate expired on ")


def tls11_server(issued: Issued) -> TlsServer:
    """A server capped at TLS 1.1, when this OpenSSL can still speak it (as a server and as a client)."""
    server = TlsServer(issued.cert_path, issued.key_path, max_version="TLSv1.1")
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE
    probe.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    probe.set_ciphers("ALL:@SECLEVEL=0")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                with probe.wrap_socket(sock) as tls:
                    assert tls.version() == "TLSv1.1"
    except (ssl.SSLError, OSError, AssertionError):
        server.close()
        pytest.skip("the local OpenSSL does not speak TLS 1.1 (min_tls_version is tested against a TLS 1.2 server)")
    server.connections = 0
    return server


def test_server_limited_to_tls_1_1(pki: Pki, good: Issued, capsys: pytest.CaptureFixture[str]) -> None:
    server = tls11_server(good)
    try:
        result = run(capsys, host="127.0.0.1", port=server.port, server_name=NAME, ca_path=str(pki.ca_path))
    finally:
        server.close()
    assert result["failed"] is True and result["protocol"] == "TLSv1.1"
    assert result["failures"][0].startswith("the server speaks at most TLSv1.1, below min_tls_version TLSv1.2 (a TLSv1.2 handshake fails: ")
    assert len(result["failures"]) == 1 and result["verified"] is True, "the certificate itself is fine"


def test_min_tls_version_13_against_a_server_capped_at_12(pki: Pki, good: Issued, serve: t.Callable[..., TlsServer],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    port = serve(good, max_version="TLSv1.2").port
    result = run(capsys, host="127.0.0.1", port=port, server_name=NAME, ca_path=str(pki.ca_path), min_tls_version="TLSv1.3")
    assert result["failed"] is True and result["protocol"] == "TLSv1.2"
    assert "the server speaks at most TLSv1.2, below min_tls_version TLSv1.3" in result["msg"]
    accepted = run(capsys, host="127.0.0.1", port=port, server_name=NAME, ca_path=str(pki.ca_path))
    assert not accepted.get("failed") and accepted["protocol"] == "TLSv1.2"


def test_postgres_starttls(pki: Pki, serve: t.Callable[..., TlsServer], capsys: pytest.CaptureFixture[str]) -> None:
    db = pki.issue("db.lab.test", ["db.lab.test"])
    server = serve(db, postgres="S")
    result = run(capsys, host="127.0.0.1", port=server.port, server_name="db.lab.test", ca_path=str(pki.ca_path),
                 starttls="postgres")
    assert not result.get("failed"), result
    assert result["verified"] is True and result["subject"] == "O=Payments Lab,CN=db.lab.test"
    assert server.ssl_requests == 1


def test_postgres_without_tls(pki: Pki, good: Issued, serve: t.Callable[..., TlsServer], capsys: pytest.CaptureFixture[str]) -> None:
    port = serve(good, postgres="N").port
    result = run(capsys, host="127.0.0.1", port=port, ca_path=str(pki.ca_path), starttls="postgres")
    assert result["failed"] is True and result["verified"] is False and result["chain_verified"] is None
    assert result["msg"] == (f"TLS certificate check of 127.0.0.1:{port} failed: the server does not offer TLS: 127.0.0.1:{port} "
                             "answered N to PostgreSQL's SSLRequest (is ssl off in its postgresql.conf?)")
    reported = run(capsys, host="127.0.0.1", port=port, starttls="postgres", fail_on_problems=False)
    assert not reported.get("failed") and reported["failures"][0].startswith("the server does not offer TLS")


def test_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    result = run(capsys, host="127.0.0.1", port=port)
    assert result["failed"] is True and result["verified"] is False and result["subject"] is None
    assert f"127.0.0.1:{port} refused the connection" in result["msg"]


def test_handshake_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    silent = SilentServer()
    try:
        result = run(capsys, host="127.0.0.1", port=silent.port, timeout=0.5)
    finally:
        silent.close()
    assert result["failed"] is True
    assert f"127.0.0.1:{silent.port} did not finish the TLS handshake within 0.5 seconds" in result["msg"]
    assert silent.connections == 1, "a timeout is not retried"


def test_plain_text_port(capsys: pytest.CaptureFixture[str]) -> None:
    plain = SilentServer(reply=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    try:
        result = run(capsys, host="127.0.0.1", port=plain.port)
    finally:
        plain.close()
    assert result["failed"] is True and f"the TLS handshake with 127.0.0.1:{plain.port} failed" in result["msg"]
    assert "(is this a TLS port? A PostgreSQL server needs starttls=postgres.)" in result["msg"]


@pytest.mark.parametrize(("args", "message"), [
    ({"port": 0}, "port must be from 1 to 65535 (got 0)"),
    ({"port": 70000}, "port must be from 1 to 65535 (got 70000)"),
    ({"min_days_valid": -1}, "min_days_valid must be a whole number of days from 0 to 36500 (got -1)"),
    ({"ca_path": "/nonexistent/ca.pem"}, "ca_path /nonexistent/ca.pem does not exist"),
    ({"timeout": 0}, "timeout must be more than 0 and at most 300 seconds"),
    ({"host": "pay lab"}, "host must be a host name or IP address"),
    ({"server_name": ".lab.test"}, "server_name must be a host name or IP address"),
    ({"min_tls_version": "TLSv1.1"}, "min_tls_version must be one of"),
])
def test_bad_input_is_refused_before_connecting(args: dict[str, t.Any], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    listener = SilentServer(reply=b"")
    try:
        result = run(capsys, **{"host": "127.0.0.1", "port": listener.port, **args})
    finally:
        listener.close()
    assert result["failed"] is True and message in result["msg"], result
    assert listener.connections == 0


def test_a_ca_path_that_is_not_pem_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    result = run(capsys, host="127.0.0.1", port=free_port(), ca_path=str(bogus))
    assert result["failed"] is True and f"ca_path {bogus} holds no CA certificate OpenSSL can load" in result["msg"]


def test_every_problem_is_named_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, host="127.0.0.1", port=0, min_days_valid=-5, ca_path="/nonexistent")
    assert result["msg"].count("; ") == 2


def test_the_reader_agrees_with_cryptography(pki: Pki) -> None:
    odd = pki.issue("  tricky, \"name\"+#", ["*.pay.lab.test", "::1"], subject_extra=[
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops; <Platform>"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")],
        extra_names=[x509.RFC822Name("ops@lab.test"), x509.UniformResourceIdentifier("https://lab.test/")],
        not_before=datetime.datetime(2049, 12, 31, tzinfo=datetime.timezone.utc), days=365)
    cert = _tls.parse_certificate(odd.cert.public_bytes(serialization.Encoding.DER))
    assert cert.subject == odd.cert.subject.rfc4514_string()
    assert cert.issuer == odd.cert.issuer.rfc4514_string()
    assert cert.not_before == odd.cert.not_valid_before_utc and cert.not_after == odd.cert.not_valid_after_utc
    assert cert.san == ["DNS:*.pay.lab.test", "IP:::1", "email:ops@lab.test", "URI:https://lab.test/"]
    assert cert.serial == hex_serial(odd.cert)


@pytest.mark.parametrize("der", [b"", b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x30\x03\x02\x01\x01", b"\x04\x00"])
def test_the_reader_refuses_garbage(der: bytes) -> None:
    with pytest.raises(ValueError):
        _tls.parse_certificate(der)


@pytest.mark.parametrize(("name", "san", "matches"), [
    ("pay.lab.test", ["DNS:pay.lab.test"], True),
    ("PAY.lab.test.", ["DNS:pay.LAB.test"], True),
    ("pay.lab.test", ["DNS:*.lab.test"], True),
    ("a.pay.lab.test", ["DNS:*.lab.test"], False),
    ("lab.test", ["DNS:*.lab.test"], False),
    ("pay.test", ["DNS:*.test"], False),
    ("pay.lab.test", ["DNS:p*.lab.test"], False),
    ("127.0.0.1", ["DNS:127.0.0.1"], False),
    ("127.0.0.1", ["IP:127.0.0.1"], True),
    ("::1", ["IP:0:0::1"], True),
    ("pay.lab.test", ["IP:127.0.0.1", "email:pay.lab.test"], False),
])
def test_name_matching(name: str, san: list[str], matches: bool) -> None:
    assert _tls.name_matches(name, san) is matches

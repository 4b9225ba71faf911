"""Real TLS servers on 127.0.0.1 for the unit tests, with certificates made here: a test CA and its leaves.

``Pki`` writes a CA and leaf certificates (PEM) into a directory; ``TlsServer`` serves one leaf on a port of its own,
optionally capped at a protocol version, optionally behind PostgreSQL's SSLRequest (answering S or N).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import struct
import threading
import typing as t
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
DAY = datetime.timedelta(days=1)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Issued(t.NamedTuple):
    cert: x509.Certificate
    cert_path: Path
    key_path: Path
    key: ec.EllipticCurvePrivateKey


def san_entry(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class Pki:
    """A test CA in ``directory`` (``ca.pem``) and the leaves it (or nobody) signs."""

    def __init__(self, directory: Path, ca_name: str = "Payments Lab Test CA", ca_days: int = 3650,
                 ca_not_before: datetime.datetime | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = self.issue(ca_name, [], days=ca_days, ca=True, not_before=ca_not_before, file_name="ca")
        self.ca_path = self.ca.cert_path

    def issue(self, common_name: str, names: list[str], days: float = 90, not_before: datetime.datetime | None = None,
              issuer: Issued | None = None, ca: bool = False, file_name: str | None = None, self_signed: bool = False,
              subject_extra: list[x509.NameAttribute] | None = None, extra_names: list[x509.GeneralName] | None = None) -> Issued:
        """A certificate for ``names`` (subjectAltName) valid ``days`` from ``not_before`` (now by default), signed by
        ``issuer`` (the CA by default) or by itself."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Payments Lab")] + (subject_extra or []))
        start = not_before or utcnow() - datetime.timedelta(minutes=5)
        signer = None if self_signed or not hasattr(self, "ca") else (issuer or self.ca)
        builder = (x509.CertificateBuilder()
                   .subject_name(subject)
                   .issuer_name(signer.cert.subject if signer else subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start)
                   .not_valid_after(start + datetime.timedelta(minutes=5) + days * DAY)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        if signer:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key()), critical=False)
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        general_names = [san_entry(name) for name in names] + (extra_names or [])
        if general_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
        cert = builder.sign(signer.key if signer else key, hashes.SHA256())
        stem = self.directory / (file_name or f"{common_name}-{cert.serial_number:x}")
        cert_path, key_path = stem.with_name(stem.name + ".pem"), stem.with_name(stem.name + ".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return Issued(cert, cert_path, key_path, key)

    def chain_file(self, leaf: Issued, *intermediates: Issued) -> Path:
        """The leaf followed by intermediates, as a server sends them."""
        path = leaf.cert_path.with_name(leaf.cert_path.name + "-chain.pem")
        path.write_bytes(b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in (leaf, *intermediates)))
        return path


class LoopbackListener:
    """A listening socket on 127.0.0.1 (a port of its own) whose connections go to ``accepted`` until ``close``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                return
            self.accepted(conn)

    def accepted(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class TlsServer(LoopbackListener):
    """Serves ``cert_path`` on 127.0.0.1 (a port of its own) until ``close``.

    ``max_version``/``min_version`` cap the protocol (TLS 1.0 and 1.1 also lower OpenSSL's security level);
    ``postgres`` answers PostgreSQL's SSLRequest first with ``S`` (then TLS) or ``N`` (then closes).
    """

    def __init__(self, cert_path: Path, key_path: Path, max_version: str | None = None, min_version: str | None = None,
                 postgres: str | None = None) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_path, key_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if max_version in ("TLSv1", "TLSv1.1") or min_version in ("TLSv1", "TLSv1.1"):
                self.context.set_ciphers("ALL:@SECLEVEL=0")
            versions = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1, "TLSv1.2": ssl.TLSVersion.TLSv1_2,
                        "TLSv1.3": ssl.TLSVersion.TLSv1_3}
            if min_version or max_version in ("TLSv1", "TLSv1.1"):  # Python's server default minimum is TLS 1.2
                self.context.minimum_version = versions[min_version or str(max_version)]
            if max_version:
                self.context.maximum_version = versions[max_version]
        self.postgres = postgres
        # Counted when the connection is accepted, before its handshake can start: a client that has finished its
        # handshake has always been counted (what the server thread records after the handshake may come later).
        self.connections = 0
        self.ssl_requests = 0
        super().__init__()

    def accepted(self, conn: socket.socket) -> None:
        self.connections += 1
        threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError), conn:
            if self.postgres:
                request = conn.recv(8, socket.MSG_WAITALL)
                if request != POSTGRES_SSL_REQUEST:
                    return
                self.ssl_requests += 1
                conn.sendall(self.postgres.encode())
                if self.postgres != "S":
                    return
            with self.context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)  # until the client closes


class SilentServer(LoopbackListener):
    """Accepts connections and never answers (a handshake that times out), or answers ``reply`` and closes."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.reply = reply
        self.connections = 0
        self.open: list[socket.socket] = []
        super().__init__()

    def accepted(self, conn: socket.socket) -> None:
        self.connections += 1
        if self.reply is None:
            self.open.append(conn)
            return
        with contextlib.suppress(OSError), conn:
            conn.settimeout(2)
            conn.recv(4096)
            conn.sendall(self.reply)

    def close(self) -> None:
        for conn in self.open:
            conn.close()
        super().close()

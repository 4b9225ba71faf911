# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Look at the certificate a TLS endpoint serves: the handshakes, a small X.509 reader and the name check.

Private to the payments.deploy collection: the interface may change without notice.

Only the Python standard library is used. A handshake that verifies the chain tells whether the chain leads to a
trusted CA; the certificate's fields are read from its DER bytes (``getpeercert(binary_form=True)``), which any
handshake returns, verified or not, so the same fields are reported when verification fails. The name is checked here
with the rules of Python's ``ssl`` module and OpenSSL (subjectAltName only, a wildcard only as the whole left-most
label, IP addresses against IP address entries), so that it is reported whatever else is wrong.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import socket
import ssl
import struct
import typing as t

PROTOCOL_RANK = {"SSLv2": 0, "SSLv3": 1, "TLSv1": 2, "TLSv1.1": 3, "TLSv1.2": 4, "TLSv1.3": 5}
MIN_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
# PostgreSQL's SSLRequest: length 8, then the request code 1234 5679.
POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (1.1.0 and later): verify a chain without looking at the validity dates.
X509_V_FLAG_NO_CHECK_TIME = 0x200000
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10
# The probe that finds what an outdated server speaks accepts anything this OpenSSL still has.
LEGACY_CIPHERS = "ALL:@SECLEVEL=0"
NOT_TLS_REASONS = ("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL",
                   "HTTP_REQUEST", "RECORD_TOO_LARGE")
SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)")
UTC = datetime.timezone.utc


class EndpointError(Exception):
    """The endpoint cannot be reached, or does not offer TLS: there is no certificate to look at."""


class HandshakeError(Exception):
    """The TLS handshake failed for a reason other than the verification of the certificate."""


class VerificationError(Exception):
    """The chain did not verify; ``code`` and ``message`` are OpenSSL's."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Handshake(t.NamedTuple):
    der: bytes | None
    protocol: str
    cipher: str


class Inspection(t.NamedTuple):
    """What the handshakes found.

    ``chain_error`` is why the chain does not verify (None when it does). ``time_error`` is OpenSSL's complaint about
    validity dates when the chain verifies apart from them. ``legacy_only`` says that only a handshake below the
    minimum version succeeded; ``modern_error`` is why the handshake at the minimum failed.
    """

    handshake: Handshake
    chain_error: str | None = None
    time_error: str | None = None
    legacy_only: bool = False
    modern_error: str | None = None


class Endpoint:
    """One TLS endpoint and how to reach it."""

    def __init__(self, host: str, port: int, server_name: str, ca_path: str | None, timeout: float,
                 starttls: str = "none") -> None:
        self.host = host
        self.port = port
        self.server_name = server_name
        self.ca_path = ca_path
        self.timeout = timeout
        self.starttls = starttls

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def context(self, min_version: str, verify: bool, legacy: bool = False, check_time: bool = True) -> ssl.SSLContext:
        """A client context; ``legacy`` accepts every protocol version and cipher this OpenSSL still has."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        if verify:
            context.verify_mode = ssl.CERT_REQUIRED
            load_trust(context, self.ca_path)
            if not check_time:
                context.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
        else:
            context.verify_mode = ssl.CERT_NONE
        if legacy:
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            try:
                context.set_ciphers(LEGACY_CIPHERS)
            except ssl.SSLError as exc:
                raise HandshakeError(f"this OpenSSL cannot offer older protocol versions: {exc}") from exc
        else:
            context.minimum_version = MIN_VERSIONS[min_version]
        return context

    def connect(self) -> socket.socket:
        try:
            return socket.create_connection((self.host, self.port), timeout=self.timeout)
        except socket.gaierror as exc:
            raise EndpointError(f"cannot resolve {self.host}: {exc.strerror or exc}") from exc
        except ConnectionRefusedError as exc:
            raise EndpointError(f"{self.where} refused the connection (nothing listens there?)") from exc
        except socket.timeout as exc:
            raise EndpointError(f"no connection to {self.where} within {self.timeout:g} seconds") from exc
        except OSError as exc:
            raise EndpointError(f"cannot connect to {self.where}: {exc.strerror or exc}") from exc

    def postgres_ssl_request(self, sock: socket.socket) -> None:
        """PostgreSQL's SSLRequest: the server answers S before the TLS handshake, or N when it has no TLS."""
        try:
            sock.sendall(POSTGRES_SSL_REQUEST)
            answer = sock.recv(1)
        except socket.timeout as exc:
            raise EndpointError(f"{self.where} did not answer PostgreSQL's SSLRequest within {self.timeout:g} seconds") from exc
        except OSError as exc:
            raise EndpointError(f"the connection to {self.where} broke at PostgreSQL's SSLRequest: {exc.strerror or exc}") from exc
        if answer == b"S":
            return
        if answer == b"N":
            raise EndpointError(f"the server does not offer TLS: {self.where} answered N to PostgreSQL's SSLRequest "
                                "(is ssl off in its postgresql.conf?)")
        if not answer:
            raise EndpointError(f"{self.where} closed the connection after PostgreSQL's SSLRequest")
        raise EndpointError(f"{self.where} answered PostgreSQL's SSLRequest with {answer!r} instead of S or N: "
                            "is it a PostgreSQL server?")

    def handshake(self, context: ssl.SSLContext) -> Handshake:
        sock = self.connect()
        with sock:
            if self.starttls == "postgres":
                self.postgres_ssl_request(sock)
            try:
                with context.wrap_socket(sock, server_hostname=self.server_name) as tls:
                    cipher = tls.cipher()
                    return Handshake(tls.getpeercert(binary_form=True), tls.version() or "unknown",
                                     cipher[0] if cipher else "unknown")
            except ssl.SSLCertVerificationError as exc:
                raise VerificationError(exc.verify_code, exc.verify_message or str(exc)) from exc
            except socket.timeout as exc:
                raise EndpointError(f"{self.where} did not finish the TLS handshake within {self.timeout:g} seconds") from exc
            except ssl.SSLEOFError as exc:
                raise HandshakeError("the server closed the connection during the TLS handshake") from exc
            except ssl.SSLError as exc:
                raise HandshakeError(self.describe_ssl_error(exc)) from exc
            except OSError as exc:
                raise HandshakeError(f"the connection broke during the TLS handshake: {exc.strerror or exc}") from exc

    def describe_ssl_error(self, exc: ssl.SSLError) -> str:
        text = SSL_LOCATION.sub("", str(exc))
        if getattr(exc, "reason", None) in NOT_TLS_REASONS:
            hint = " A PostgreSQL server needs starttls=postgres." if self.starttls == "none" else ""
            return f"{text} (is this a TLS port?{hint})"
        return text


def load_trust(context: ssl.SSLContext, ca_path: str | None) -> None:
    """Trust the CA certificates of ``ca_path`` (a PEM file, or a directory prepared with c_rehash), or the system's."""
    if ca_path is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    elif os.path.isdir(ca_path):
        context.load_verify_locations(capath=ca_path)
    else:
        context.load_verify_locations(cafile=ca_path)


def inspect_at(endpoint: Endpoint, min_version: str, legacy: bool) -> Inspection:
    """Verify the chain; when it does not verify, find out why and fetch the certificate without verifying."""
    try:
        return Inspection(endpoint.handshake(endpoint.context(min_version, verify=True, legacy=legacy)))
    except VerificationError as exc:
        chain_error = exc.message
        if exc.code in (X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED):
            try:
                found = endpoint.handshake(endpoint.context(min_version, verify=True, legacy=legacy, check_time=False))
                return Inspection(found, time_error=exc.message)
            except VerificationError as again:
                chain_error = again.message
    return Inspection(endpoint.handshake(endpoint.context(min_version, verify=False, legacy=legacy)), chain_error=chain_error)


def inspect(endpoint: Endpoint, min_version: str) -> Inspection:
    """The handshakes at ``min_version``; when they fail, whether the server speaks only an older version.

    Raises EndpointError (no connection, no TLS) and HandshakeError (no handshake at all).
    """
    try:
        return inspect_at(endpoint, min_version, legacy=False)
    except HandshakeError as modern:
        try:
            found = inspect_at(endpoint, min_version, legacy=True)
        except (HandshakeError, EndpointError):
            raise modern from None
        if PROTOCOL_RANK.get(found.handshake.protocol, 0) >= PROTOCOL_RANK[min_version]:
            raise modern from None
        return found._replace(legacy_only=True, modern_error=str(modern))


# --- X.509 -------------------------------------------------------------------------------------------------------

ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "STREET", "2.5.4.10": "O",
    "2.5.4.11": "OU", "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
    "2.5.4.5": "serialNumber", "1.2.840.113549.1.9.1": "emailAddress",
}
SUBJECT_ALT_NAME = "2.5.29.17"
GENERAL_NAME_PREFIX = {0x81: "email", 0x82: "DNS", 0x86: "URI"}


class Certificate(t.NamedTuple):
    subject: str
    issuer: str
    serial: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    san: list[str]


def read_element(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """``(tag, start, end)`` of the DER element at ``pos`` (its value is ``data[start:end]``)."""
    if pos + 2 > end:
        raise ValueError("truncated DER element")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if tag & 0x1F == 0x1F:
        raise ValueError("unexpected multi-byte DER tag")
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or pos + count > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > end:
        raise ValueError("truncated DER element")
    return tag, pos, pos + length


def read_elements(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    found = []
    while start < end:
        element = read_element(data, start, end)
        found.append(element)
        start = element[2]
    return found


def expect(element: tuple[int, int, int], tag: int, what: str) -> tuple[int, int, int]:
    if element[0] != tag:
        raise ValueError(f"{what}: DER tag 0x{element[0]:02x} where 0x{tag:02x} belongs")
    return element


def read_oid(raw: bytes) -> str:
    if not raw or raw[-1] & 0x80:
        raise ValueError("bad object identifier")
    arcs, value = [], 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    top = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [top, arcs[0] - 40 * top] + arcs[1:])


def read_string(tag: int, raw: bytes) -> str:
    if tag == 0x0C:
        return raw.decode("utf-8", "replace")
    if tag == 0x1E:
        return raw.decode("utf-16-be", "replace")
    if tag == 0x1C:
        return raw.decode("utf-32-be", "replace")
    if tag in (0x12, 0x13, 0x14, 0x16, 0x1A):
        return raw.decode("latin-1")
    return "#" + raw.hex()


def escape_dn_value(value: str) -> str:
    """RFC 4514 escaping, as the ``cryptography`` library writes it."""
    if not value:
        return ""
    for char in "\\\"+,;<>":
        value = value.replace(char, "\\" + char)
    value = value.replace("\0", "\\00")
    if value[0] in "# ":
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def read_name(data: bytes, start: int, end: int) -> str:
    """A Name as an RFC 4514 string (most specific first: C(CN=pay.example.com,O=Example))."""
    rdns = []
    for element in read_elements(data, start, end):
        dummy, rdn_start, rdn_end = expect(element, 0x31, "name")
        parts = []
        for attribute in read_elements(data, rdn_start, rdn_end):
            dummy, attr_start, attr_end = expect(attribute, 0x30, "name attribute")
            pair = read_elements(data, attr_start, attr_end)
            if len(pair) != 2:
                raise ValueError("bad name attribute")
            oid = read_oid(data[expect(pair[0], 0x06, "attribute type")[1]:pair[0][2]])
            value = read_string(pair[1][0], data[pair[1][1]:pair[1][2]])
            parts.append(f"{ATTRIBUTE_NAMES.get(oid, oid)}={escape_dn_value(value)}")
        rdns.append("+".join(parts))
    return ",".join(reversed(rdns))


def read_time(data: bytes, element: tuple[int, int, int]) -> datetime.datetime:
    tag, start, end = element
    text = data[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ; RFC 5280: YY below 50 is 20YY
        year = int(text[:2])
        text = f"{year + (2000 if year < 50 else 1900)}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime, YYYYMMDDHHMMSSZ
        raise ValueError("bad validity time")
    return datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def read_san(data: bytes, start: int, end: int) -> list[str]:
    """The entries of a subjectAltName value: C(DNS:...), C(IP:...), C(email:...), C(URI:...); others are skipped."""
    names = []
    dummy, seq_start, seq_end = expect(read_element(data, start, end), 0x30, "subjectAltName")
    for tag, name_start, name_end in read_elements(data, seq_start, seq_end):
        raw = data[name_start:name_end]
        if tag == 0x87 and len(raw) in (4, 16):
            names.append(f"IP:{ipaddress.ip_address(raw)}")
        elif tag in GENERAL_NAME_PREFIX:
            names.append(f"{GENERAL_NAME_PREFIX[tag]}:{raw.decode('latin-1')}")
    return names


def parse_certificate(der: bytes) -> Certificate:
    """The fields of a DER certificate this module reports; ValueError when it cannot be read."""
    try:
        dummy, cert_start, cert_end = expect(read_element(der, 0, len(der)), 0x30, "certificate")
        dummy, tbs_start, tbs_end = expect(read_element(der, cert_start, cert_end), 0x30, "tbsCertificate")
        fields = read_elements(der, tbs_start, tbs_end)
        if fields and fields[0][0] == 0xA0:
            fields = fields[1:]
        if len(fields) < 6:
            raise ValueError("too few fields in tbsCertificate")
        serial = expect(fields[0], 0x02, "serial number")
        issuer = expect(fields[2], 0x30, "issuer")
        validity = read_elements(der, *expect(fields[3], 0x30, "validity")[1:])
        subject = expect(fields[4], 0x30, "subject")
        if len(validity) != 2:
            raise ValueError("bad validity")
        san: list[str] = []
        for extensions in (f for f in fields[6:] if f[0] == 0xA3):
            dummy, ext_start, ext_end = expect(read_element(der, extensions[1], extensions[2]), 0x30, "extensions")
            for extension in read_elements(der, ext_start, ext_end):
                parts = read_elements(der, *expect(extension, 0x30, "extension")[1:])
                if read_oid(der[parts[0][1]:parts[0][2]]) == SUBJECT_ALT_NAME:
                    value = expect(parts[-1], 0x04, "extension value")
                    san = read_san(der, value[1], value[2])
        serial_number = int.from_bytes(der[serial[1]:serial[2]], "big", signed=True)
        serial_hex = format(abs(serial_number), "X")
        serial_hex = ("-" if serial_number < 0 else "") + ("0" * (len(serial_hex) % 2)) + serial_hex
        return Certificate(read_name(der, subject[1], subject[2]), read_name(der, issuer[1], issuer[2]), serial_hex,
                           read_time(der, validity[0]), read_time(der, validity[1]), san)
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed certificate ({exc})") from exc


def name_matches(server_name: str, san: t.Sequence[str]) -> bool:
    """Whether ``server_name`` matches an entry of ``san``, by the rules of Python's ssl module and OpenSSL."""
    try:
        address = ipaddress.ip_address(server_name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return any(entry.startswith("IP:") and ipaddress.ip_address(entry[3:]) == address for entry in san)
    try:
        name = server_name.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return False
    for entry in san:
        if not entry.startswith("DNS:"):
            continue
        pattern = entry[4:].rstrip(".").lower()
        if pattern == name:
            return True
        suffix = pattern[1:]
        if pattern.startswith("*.") and "*" not in suffix and suffix.count(".") >= 2 and name.endswith(suffix):
            label = name[:-len(suffix)]
            if label and "." not in label:
                return True
    return False

"""TLS clients for the tests: an old-protocol handshake that a server configured for TLS 1.2 or newer must refuse."""

from __future__ import annotations

import re
import socket
import ssl
import warnings


def tls11_handshake(port: int, host: str = "127.0.0.1") -> str:
    """Offer only TLS 1.1 to host:port and say what happened: "accepted with <version>", "refused by the server (...)",
    or "client cannot offer TLS 1.1 (...)" when this machine's OpenSSL does not allow such a client at all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # deprecated on purpose: this client must be the old one
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError) as exc:
        return f"client cannot offer TLS 1.1 ({exc})"
    try:
        with socket.create_connection((host, port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
            return f"accepted with {tls.version()}"
    except ssl.SSLError as exc:
        text = str(exc)
        if re.search(r"NO_PROTOCOLS_AVAILABLE|NO_CIPHERS_AVAILABLE|no protocols available", text, re.I):
            return f"client cannot offer TLS 1.1 ({text})"
        return f"refused by the server ({text})"
    except OSError as exc:  # the server closed the connection on the ClientHello
        return f"refused by the server ({exc!r})"

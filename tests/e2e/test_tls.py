"""TLS in the lab: PostgreSQL and HAProxy's HTTPS frontends serve certificates from the lab's CA, and the service and the
deploy verify them."""
from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import urllib.parse

import psycopg
import pytest

from helpers import query
from tls_clients import tls11_handshake

pytestmark = pytest.mark.timeout(300)


def dsn(lab: dict, **params: str) -> str:
    extra = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{lab['postgres_dsn']}?{extra}"


def test_the_services_database_connections_use_tls(lab):
    """Every connection of the service's role (the colours' pools, the deploy's modules) is encrypted."""
    rows = query(lab, "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                      "WHERE a.usename = 'payments' AND a.pid <> pg_backend_pid()")
    assert rows, "no connection of the service to look at: is a release running?"
    assert all(ssl for ssl, _version in rows), rows
    assert {version for _ssl, version in rows} <= {"TLSv1.2", "TLSv1.3"}, rows


def test_verify_full_accepts_the_lab_ca_and_refuses_any_other(lab):
    password = lab["secrets"]["postgres_password"]
    with psycopg.connect(dsn(lab, sslmode="verify-full", sslrootcert=lab["tls_ca_file"]), password=password,
                         connect_timeout=5) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
    # The system's CAs did not issue the lab's certificate: a client that verifies against them refuses the server.
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(dsn(lab, sslmode="verify-full", sslrootcert="/etc/ssl/certs/ca-certificates.crt"),
                        password=password, connect_timeout=5)
    # And a name the certificate does not hold is refused too: verify-full checks the name the client asked for.
    port = int(lab["postgres_dsn"].rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(psycopg.OperationalError, match="does not match"):
        psycopg.connect(host="wrong.payments.lab", hostaddr="127.0.0.1", port=port, dbname="payments", user="payments",
                        password=password, sslmode="verify-full", sslrootcert=lab["tls_ca_file"], connect_timeout=5)


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_the_frontend_serves_https_with_the_lab_certificate(lab, environment):
    """HAProxy terminates HTTPS for each environment: the lab CA's certificate for lb1.payments.lab, TLS 1.2 or newer,
    and HSTS of at least a year on the answer (the service's own header, or HAProxy's when it sent none)."""
    port = urllib.parse.urlsplit(lab[f"{environment}_https_url"]).port
    context = ssl.create_default_context(cafile=lab["tls_ca_file"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="lb1.payments.lab") as tls:
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}
        subject = dict(pair[0] for pair in tls.getpeercert()["subject"])
        assert subject["commonName"] == "lb1.payments.lab"
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("GET", "/version")
        answer = conn.getresponse()
        body = json.loads(answer.read())
        assert answer.status == 200 and body["version"]
        hsts = answer.getheader("Strict-Transport-Security", "")
        assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 31536000, hsts
        assert answer.getheader("X-Backend", "").startswith(f"{environment}_")
    finally:
        conn.close()


def test_the_frontend_refuses_old_tls_and_other_names(lab):
    port = urllib.parse.urlsplit(lab["production_https_url"]).port
    outcome = tls11_handshake(port)
    if outcome.startswith("client cannot offer"):
        pytest.skip(outcome)
    assert outcome.startswith("refused by the server"), outcome
    context = ssl.create_default_context(cafile=lab["tls_ca_file"])
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            context.wrap_socket(raw, server_hostname="shop.payments.lab").close()
    # A client trusting only the system's CAs does not trust the lab's certificate.
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname="lb1.payments.lab").close()

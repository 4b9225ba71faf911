"""TLS in the lab: PostgreSQL serves a certificate from the lab's CA, and the service and the deploy verify it."""
from __future__ import annotations

import psycopg
import pytest

from helpers import query

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

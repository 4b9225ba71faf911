"""Real ansible-playbook runs with the run_report callback enabled: a TLS server and an HTTP frontend on loopback,
the fixture map and playbook of this directory, and the three report files each run writes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from host_python import HOST_PYTHON
from loopback_ports import free_port
from unit.tls_servers import Pki

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
VERSION = {"version": "1.4.2", "colour": "green", "instance": "app1-green"}


class Frontend(ThreadingHTTPServer):
    """Answers GET /version like the service; every ``fail_every``-th request is a 503. Counts what it served."""

    def __init__(self, port: int, fail_every: int) -> None:
        self.fail_every = fail_every
        self.served: list[int] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), FrontendHandler)


class FrontendHandler(BaseHTTPRequestHandler):
    server: Frontend

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)  pylint: disable=invalid-name
        with self.server.lock:
            number = len(self.server.served) + 1
            status = 503 if self.server.fail_every and number % self.server.fail_every == 0 else 200
            self.server.served.append(status)
        body = json.dumps(VERSION if status == 200 else {"error": "unavailable"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002 (http.server's signature)
        pass


class TlsEndpoint:
    """Serves one certificate on a port of free_port() until closed (handshakes only)."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_path, key_path)
        self.key_pem = key_path.read_text(encoding="utf-8")
        self.port = free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            threading.Thread(target=self.handshake, args=(conn,), daemon=True).start()

    def handshake(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError), conn, self.context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    def close(self) -> None:
        self.sock.close()


class Run(t.NamedTuple):
    rc: int
    statuses: list[int]  # what the frontend answered during the run
    output: str
    report_dir: Path
    journal_dir: Path
    extra: dict[str, t.Any]

    def files(self) -> dict[str, Path]:
        """The report's files by suffix (json, md, html); exactly one report per run."""
        found = {path.suffix.lstrip("."): path for path in self.report_dir.iterdir() if not path.name.startswith(".")}
        assert sorted(found) == ["html", "json", "md"], sorted(self.report_dir.iterdir())
        return found

    def report(self) -> dict[str, t.Any]:
        return json.loads(self.files()["json"].read_text())

    def texts(self) -> dict[str, str]:
        return {suffix: path.read_text() for suffix, path in self.files().items()}


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def tls_endpoint(pki: Pki) -> t.Iterator[tuple[TlsEndpoint, t.Any]]:
    leaf = pki.issue("127.0.0.1", ["127.0.0.1"], days=47)
    endpoint = TlsEndpoint(leaf.cert_path, leaf.key_path)
    yield endpoint, leaf.cert
    endpoint.close()


@pytest.fixture(scope="session")
def frontend() -> t.Iterator[Frontend]:
    server = Frontend(free_port(), fail_every=5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def run_playbook(tmp_path_factory: pytest.TempPathFactory, pki: Pki, tls_endpoint: tuple[TlsEndpoint, t.Any],
                 frontend: Frontend) -> t.Callable[..., Run]:
    """Runs fixtures/deploy.yml with the report callback; keyword arguments override its variables. Without
        load_balancer_vars the report directory and "no Prometheus" are set through the environment; checklist_map None
        leaves the collection's own map."""

    def run(env_extra: dict[str, str] | None = None, load_balancer_vars: dict[str, t.Any] | None = None,
            checklist_map: Path | None = FIXTURES / "map.yml", **overrides: t.Any) -> Run:
        work = tmp_path_factory.mktemp("run")
        extra = {
            "run_report_run_id": f"production-1.4.2-{work.name}",
            "run_report_db_password": "pw-" + os.urandom(6).hex(),
            "run_report_secret": "whsec_" + os.urandom(12).hex(),
            "run_report_restricted_key": "rk_live_" + os.urandom(10).hex(),
            "run_report_private_key": tls_endpoint[0].key_pem,
            "run_report_tls_port": tls_endpoint[0].port,
            "run_report_ca_path": str(pki.ca_path),
            "run_report_http_port": frontend.server_address[1],
            "run_report_requests": 60,
            "run_report_journal_dir": str(work / "journal"),
            "run_report_failing_change": "",
            "run_report_gate_record": {},
            **overrides,
        }
        (work / "extra.json").write_text(json.dumps(extra))
        # localhost is the (only) load balancer: the callback reads the journal directory and Prometheus from it.
        host = {"ansible_connection": "local", "ansible_python_interpreter": HOST_PYTHON, **(load_balancer_vars or {})}
        (work / "hosts.yml").write_text(json.dumps({"all": {"children": {"loadbalancers": {"hosts": {"localhost": host}}}}}))
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_CALLBACKS_ENABLED": "payments.deploy.run_report",
               "ANSIBLE_NOCOLOR": "1"}
        env.pop("PAYMENTS_RUN_REPORT_CHECKLIST_MAP", None)
        if checklist_map:
            env["PAYMENTS_RUN_REPORT_CHECKLIST_MAP"] = str(checklist_map)
        report_dir = work / "journal" / "reports"
        if load_balancer_vars is None:
            report_dir = work / "reports"
            env.update(PAYMENTS_RUN_REPORT_DIR=str(report_dir), PAYMENTS_RUN_REPORT_PROMETHEUS_URL="none")
        env.update(env_extra or {})
        before = len(frontend.served)
        done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(work / "hosts.yml"),
                               "-e", f"@{work / 'extra.json'}", str(FIXTURES / "deploy.yml")],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
        return Run(done.returncode, frontend.served[before:], done.stdout + done.stderr, report_dir, work / "journal", extra)

    return run


@pytest.fixture(scope="session")
def succeeded_run(run_playbook: t.Callable[..., Run]) -> Run:
    """A run that passes every play, without a sign-off."""
    return run_playbook()


@pytest.fixture(scope="session")
def failed_run(run_playbook: t.Callable[..., Run], tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A run whose migration play fails (the switch play never starts), on a controller without matplotlib (a package
    of that name that cannot be imported comes first on the path), after its preflight recorded a sign-off."""
    hidden = tmp_path_factory.mktemp("no-matplotlib")
    (hidden / "matplotlib").mkdir()
    (hidden / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib on this controller')\n")
    signed = {"signoffs": {"operations_manager": {"name": "Margaret Hamilton", "date": "2026-11-27", "reference": "CHG-1042"}}}
    return run_playbook(env_extra={"PYTHONPATH": str(hidden)}, run_report_failing_change="0042_" + os.urandom(3).hex(),
                        run_report_gate_record=signed)

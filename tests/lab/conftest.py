"""Fixtures for the lab tests: throw-away PostgreSQL and Redis servers, the Stripe emulator and a payment service
run from its release."""

from __future__ import annotations

import http.client
import importlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import psycopg
import pytest
import redis
import stripe
from loopback_ports import free_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "lab" / "build_release.py"
SOURCE = REPO / "lab" / "payment_service"
BOOTSTRAP_SQL = SOURCE / "bootstrap.sql"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
VERSION = "1.1.0"
APP_DB = "payments"
APP_USER = "payments_app"
START_TIMEOUT_S = 30
EMULATOR_ACCOUNT = "acct_1LabEmulator00001"


@pytest.fixture(scope="module")
def labctl() -> ModuleType:
    """lab/labctl.py as a module (its functions render the lab's configuration without starting anything)."""
    sys.path.insert(0, str(REPO / "lab"))
    try:
        return importlib.import_module("labctl")
    finally:
        sys.path.remove(str(REPO / "lab"))


def wait_until(check: Callable[[], bool], what: str, timeout: float = START_TIMEOUT_S) -> None:
    """Poll check until it is true or fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30,
                 group: bool = False) -> int:
    """Signal a process we started; kill it (and its process group) if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait()
    return proc.returncode


def private_dir(prefix: str, owner: str | None = None) -> Path:
    """A fresh directory under the system temp dir (pytest's base dir is closed to other users)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if owner:
        shutil.chown(path, owner, owner)
    return path


@dataclass
class Reply:
    """An HTTP response as the tests look at it."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


def http_call(port: int, method: str, path: str, token: str | None = None, body: Any = None,
              headers: dict[str, str] | None = None, timeout: float = 10, raw: bytes | None = None) -> Reply:
    """One request to 127.0.0.1:port on a fresh connection; token becomes a bearer Authorization header.

    body is sent as JSON; raw is sent as it is (with the Content-Type the caller gives)."""
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    payload = raw
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


@dataclass
class Postgres:
    """A running throw-away cluster with the payment schema in database 'payments'."""

    port: int
    password: str
    app_password: str
    base: Path
    proc: subprocess.Popen[bytes]

    def admin_dsn(self, dbname: str = APP_DB) -> str:
        """Superuser connection string (tests only)."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def app_url(self, dbname: str = APP_DB) -> str:
        """DATABASE_URL for the service: a role that may read and write rows but not change the schema."""
        return f"postgresql://{APP_USER}:{self.app_password}@127.0.0.1:{self.port}/{dbname}"


def _as_postgres_user() -> dict[str, Any]:
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def start_postgres() -> Postgres:
    """initdb a cluster with password auth on a free port, start it and load bootstrap.sql."""
    owner = "postgres" if os.geteuid() == 0 else None
    base = private_dir("payments-pg-", owner)
    password, port = secrets.token_hex(16), free_port()
    try:
        proc = _initdb_and_start(base, password, port, owner)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    cluster = Postgres(port, password, secrets.token_hex(16), base, proc)
    try:
        wait_until(lambda: _accepts(cluster.admin_dsn("postgres")), "PostgreSQL to accept connections")
        _load_schema(cluster)
    except BaseException:
        stop_postgres(cluster)
        raise
    return cluster


def _initdb_and_start(base: Path, password: str, port: int, owner: str | None) -> subprocess.Popen[bytes]:
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    if owner:
        shutil.chown(pwfile, owner, owner)
    subprocess.run([str(PG_BIN / "initdb"), "-D", str(base / "data"), "-U", "postgres", "--auth=scram-sha-256",
                    f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C"],
                   check=True, capture_output=True, **_as_postgres_user())
    with open(base / "postgres.log", "wb") as log:
        return subprocess.Popen([str(PG_BIN / "postgres"), "-D", str(base / "data"), "-p", str(port),
                                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
                                stdout=log, stderr=subprocess.STDOUT, **_as_postgres_user())


def stop_postgres(cluster: Postgres) -> None:
    """Fast shutdown (SIGINT) and remove the cluster's files."""
    stop_process(cluster.proc, signal.SIGINT)
    shutil.rmtree(cluster.base, ignore_errors=True)


def _accepts(dsn: str) -> bool:
    try:
        psycopg.connect(dsn, connect_timeout=1).close()
    except psycopg.OperationalError:
        return False
    return True


def _load_schema(cluster: Postgres) -> None:
    with psycopg.connect(cluster.admin_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{cluster.app_password}'")
        conn.execute(f"CREATE DATABASE {APP_DB}")
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        conn.execute(BOOTSTRAP_SQL.read_text())
        conn.execute(BOOTSTRAP_SQL.read_text())  # idempotent: a second run changes nothing
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_USER}")


@dataclass
class RedisServer:
    """A running throw-away redis-server that requires a password."""

    port: int
    password: str
    base: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """REDIS_URL for the service."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"


def start_redis() -> RedisServer:
    """redis-server with requirepass on a free port, no persistence; the password stays off the command line."""
    base = private_dir("payments-redis-")
    password, port = secrets.token_hex(16), free_port()
    config = base / "redis.conf"
    config.write_text(f'port {port}\nbind 127.0.0.1\nrequirepass {password}\nsave ""\nappendonly no\n'
                      f"dir {base}\ndaemonize no\n")
    config.chmod(0o600)
    with open(base / "redis.log", "wb") as log:
        proc = subprocess.Popen(["redis-server", str(config)], stdout=log, stderr=subprocess.STDOUT)
    server = RedisServer(port, password, base, proc)
    try:
        wait_until(lambda: _redis_answers(server), "redis-server to answer PING")
    except BaseException:
        stop_redis(server)
        raise
    return server


def _redis_answers(server: RedisServer) -> bool:
    try:
        return bool(redis.Redis.from_url(server.url, socket_connect_timeout=1).ping())
    except redis.exceptions.ConnectionError:
        return False


def stop_redis(server: RedisServer) -> None:
    """Stop the server and remove its files."""
    stop_process(server.proc)
    shutil.rmtree(server.base, ignore_errors=True)


@dataclass
class StripeEmulator:
    """A running Stripe API emulator (lab/stripe_emulator) that accepts one test secret key."""

    port: int
    secret_key: str
    base: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """STRIPE_API_BASE for the service."""
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> stripe.StripeClient:
        """An SDK client on the emulator, as the tests' view of 'what Stripe holds'."""
        return stripe.StripeClient(self.secret_key, base_addresses={"api": self.url}, max_network_retries=0)

    def log(self) -> str:
        """Everything the emulator wrote so far."""
        return (self.base / "emulator.log").read_text(errors="replace")

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """A call to the emulator's own /_emulator API (faults, request log, deliveries)."""
        reply = http_call(self.port, method, path, body=body)
        assert reply.status == 200, reply.body
        return reply.json()

    def requests(self, method: str, path_prefix: str) -> list[dict[str, Any]]:
        """The emulator's log of API requests with this method and path prefix, oldest first."""
        return list(self.admin("GET", f"/_emulator/requests?method={method}&path_prefix={path_prefix}")["data"])


def start_stripe_emulator(secret_key: str, port: int | None = None) -> StripeEmulator:
    """The emulator on a free port (or the given one: a restart) with a keys file (mode 0600) that holds the key."""
    base = private_dir("payments-stripe-")
    keys = base / "keys.json"
    keys.write_text(json.dumps({"account": EMULATOR_ACCOUNT, "keys": [secret_key]}))
    keys.chmod(0o600)
    port = port or free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "lab"), "PYTHONUNBUFFERED": "1"}
    with open(base / "emulator.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "stripe_emulator", "--host", "127.0.0.1", "--port", str(port),
                                 "--keys-file", str(keys)], cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT)
    emulator = StripeEmulator(port, secret_key, base, proc)
    try:
        wait_until(lambda: _emulator_listening(emulator), "the Stripe emulator to listen")
    except BaseException:
        stop_stripe_emulator(emulator)
        raise
    return emulator


def _emulator_listening(emulator: StripeEmulator) -> bool:
    if emulator.proc.poll() is not None:
        pytest.fail(f"the Stripe emulator exited with {emulator.proc.returncode}:\n{emulator.log()}")
    return f"listening on {emulator.url}" in emulator.log()


def stop_stripe_emulator(emulator: StripeEmulator) -> None:
    """Stop the emulator and remove its files."""
    stop_process(emulator.proc)
    shutil.rmtree(emulator.base, ignore_errors=True)


@dataclass
class SmtpSink:
    """A running lab SMTP sink (lab/smtp_sink: aiosmtpd) with its HTTP API."""

    smtp_port: int
    http_port: int
    base: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """SMTP_URL for the service."""
        return f"smtp://127.0.0.1:{self.smtp_port}"

    def messages(self, **query: str) -> list[dict[str, Any]]:
        """GET /messages with the given filters (to=..., header=Name:value)."""
        path = "/messages" + ("?" + urllib.parse.urlencode(query) if query else "")
        reply = http_call(self.http_port, "GET", path)
        assert reply.status == 200, reply.body
        return list(reply.json()["messages"])

    def raw(self, message_id: str) -> bytes:
        """GET /messages/ID: one message as it was received."""
        reply = http_call(self.http_port, "GET", f"/messages/{message_id}")
        assert reply.status == 200 and reply.headers["content-type"] == "message/rfc822", reply.body
        return reply.body

    def log(self) -> str:
        """Everything the sink wrote so far."""
        return (self.base / "sink.log").read_text(errors="replace")


def start_smtp_sink() -> SmtpSink:
    """python -m smtp_sink on two free ports with a fresh maildir."""
    base = private_dir("payments-smtp-")
    smtp_port, http_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "lab"), "PYTHONUNBUFFERED": "1"}
    with open(base / "sink.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "smtp_sink", "--smtp-port", str(smtp_port), "--http-port",
                                 str(http_port), "--maildir", str(base / "mail")], cwd=base, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    sink = SmtpSink(smtp_port, http_port, base, proc)
    try:
        wait_until(lambda: _sink_listening(sink), "the SMTP sink to listen")
    except BaseException:
        stop_smtp_sink(sink)
        raise
    return sink


def _sink_listening(sink: SmtpSink) -> bool:
    if sink.proc.poll() is not None:
        pytest.fail(f"the SMTP sink exited with {sink.proc.returncode}:\n{sink.log()}")
    return "smtp sink: SMTP on" in sink.log()


def stop_smtp_sink(sink: SmtpSink) -> None:
    """Stop the sink and remove its files."""
    stop_process(sink.proc)
    shutil.rmtree(sink.base, ignore_errors=True)


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = start_smtp_sink()
    try:
        yield sink
    finally:
        stop_smtp_sink(sink)


@dataclass
class RunningService:
    """A payment service process started from an unpacked release with the manifest's start command."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def call(self, method: str, path: str, token: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None, timeout: float = 10, raw: bytes | None = None) -> Reply:
        """One HTTP request to this instance."""
        return http_call(self.port, method, path, token, body, headers, timeout, raw)

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def metric(self, series: str) -> float:
        """The current value of one exact series line of /metrics, e.g. 'refunds_total'."""
        return metric_value(self.call("GET", "/metrics").body.decode(), series)


def start_command(release_dir: Path, port: int) -> list[str]:
    """The manifest's start command with {port} filled in."""
    command: str = json.loads((release_dir / "manifest.json").read_text())["start_command"]
    return shlex.split(command.replace("{port}", str(port)))


def launch(release_dir: Path, env: dict[str, str], log_path: Path, wait: bool = True,
           port: int | None = None) -> RunningService:
    """Start the service as the deploy tooling does: cwd = release dir, python3 on PATH has its dependencies."""
    port = port or free_port()
    full_env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "LANG": "C.UTF-8", **env}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(start_command(release_dir, port), cwd=release_dir, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    service = RunningService(proc, port, log_path)
    try:
        if wait:
            wait_until(lambda: _healthy(service), f"the service to answer /healthz (log: {log_path})")
    except BaseException:
        stop_service(service)
        raise
    return service


def _healthy(service: RunningService) -> bool:
    if service.proc.poll() is not None:
        pytest.fail(f"service exited with {service.proc.returncode}:\n{service.log()}")
    try:
        return service.call("GET", "/healthz").status == 200
    except OSError:
        return False


def stop_service(service: RunningService) -> int:
    """SIGTERM (graceful stop); the service's whole process group is killed if it hangs."""
    return stop_process(service.proc, group=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    cluster = start_postgres()
    try:
        yield cluster
    finally:
        stop_postgres(cluster)


@pytest.fixture
def redis_factory() -> Iterator[Callable[[], RedisServer]]:
    """Start extra redis servers; all are stopped after the test."""
    started: list[RedisServer] = []

    def factory() -> RedisServer:
        started.append(start_redis())
        return started[-1]

    yield factory
    for server in started:
        stop_redis(server)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        stop_redis(server)


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts built by build_release.py, as the pipeline builds them."""
    out = tmp_path_factory.mktemp("artifacts")
    subprocess.run([sys.executable, str(BUILD_SCRIPT), "--version", VERSION, "--output-dir", str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def release_dir(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpacked release directory payment-service-VERSION/."""
    dest = tmp_path_factory.mktemp("release")
    with tarfile.open(artifact_dir / f"payment-service-{VERSION}.tar.gz") as tar:
        tar.extractall(dest, filter="data")
    return dest / f"payment-service-{VERSION}"


@pytest.fixture(scope="session")
def app_secrets() -> dict[str, str]:
    """Secret settings with fresh random values: any of them found in a log or a body is a leak."""
    return {
        "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_hex(12),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(12),
        "ENCRYPTION_KEY": secrets.token_hex(32),
        "HASH_SALT": secrets.token_hex(16),
        "PAYMENTS_API_KEY": "pk_" + secrets.token_hex(16),
        "PAYMENTS_ADMIN_KEY": "ak_" + secrets.token_hex(16),
        "PAYMENTS_SMOKE_KEY": "smk_" + secrets.token_hex(16),
    }


@pytest.fixture(scope="session")
def stripe_emulator(app_secrets: dict[str, str]) -> Iterator[StripeEmulator]:
    """The shared emulator; it accepts the service's STRIPE_SECRET_KEY."""
    emulator = start_stripe_emulator(app_secrets["STRIPE_SECRET_KEY"])
    try:
        yield emulator
    finally:
        stop_stripe_emulator(emulator)


@pytest.fixture
def stripe_emulator_factory(app_secrets: dict[str, str]) -> Iterator[Callable[..., StripeEmulator]]:
    """Start extra emulators (e.g. to stop one under a running service, and start it again on its port); all are
    stopped after the test."""
    started: list[StripeEmulator] = []

    def factory(port: int | None = None) -> StripeEmulator:
        started.append(start_stripe_emulator(app_secrets["STRIPE_SECRET_KEY"], port))
        return started[-1]

    yield factory
    for emulator in started:
        stop_stripe_emulator(emulator)


@pytest.fixture(scope="session")
def service_env(postgres: Postgres, redis_server: RedisServer, app_secrets: dict[str, str],
                stripe_emulator: StripeEmulator) -> dict[str, str]:
    """The complete environment of a healthy instance."""
    return {"DATABASE_URL": postgres.app_url(), "REDIS_URL": redis_server.url, **app_secrets,
            "STRIPE_API_BASE": stripe_emulator.url, "SERVICE_INSTANCE": "app1-green", "SERVICE_COLOUR": "green"}


@pytest.fixture(scope="session")
def secret_values(service_env: dict[str, str], postgres: Postgres, redis_server: RedisServer) -> list[str]:
    """Every value that must never be printed, including the passwords inside the URLs."""
    keys = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "ENCRYPTION_KEY", "HASH_SALT",
            "PAYMENTS_API_KEY", "PAYMENTS_ADMIN_KEY", "PAYMENTS_SMOKE_KEY")
    return [service_env[key] for key in keys] + [postgres.app_password, redis_server.password]


@pytest.fixture(scope="session")
def service(release_dir: Path, service_env: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The shared healthy instance."""
    running = launch(release_dir, service_env, tmp_path_factory.mktemp("service") / "service.log")
    try:
        yield running
    finally:
        stop_service(running)


@dataclass
class WebhookEndpoint:
    """A webhook endpoint registered in the emulator: the port it points at and its signing secret."""

    id: str
    port: int
    secret: str


@pytest.fixture(scope="session")
def webhook_endpoint(stripe_emulator: StripeEmulator) -> WebhookEndpoint:
    """An endpoint for every event type, pointing at the port stripe_service will listen on."""
    port = free_port()
    endpoint = stripe_emulator.client().v1.webhook_endpoints.create(
        {"url": f"http://127.0.0.1:{port}/webhooks/stripe", "enabled_events": ["*"]})
    assert endpoint.secret and endpoint.secret.startswith("whsec_")
    return WebhookEndpoint(str(endpoint.id), port, endpoint.secret)


@pytest.fixture(scope="session")
def stripe_service(release_dir: Path, service_env: dict[str, str], webhook_endpoint: WebhookEndpoint,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """An instance that takes payments: its webhook secret is the one the emulator signs deliveries with."""
    env = {**service_env, "STRIPE_WEBHOOK_SECRET": webhook_endpoint.secret, "SERVICE_INSTANCE": "app1-blue",
           "SERVICE_COLOUR": "blue"}
    running = launch(release_dir, env, tmp_path_factory.mktemp("stripe-service") / "service.log",
                     port=webhook_endpoint.port)
    try:
        yield running
    finally:
        stop_service(running)


@pytest.fixture
def launcher(release_dir: Path, tmp_path: Path) -> Iterator[Callable[..., RunningService]]:
    """Start extra instances with their own environment (of another unpacked release, if given); all are stopped
    after the test."""
    started: list[RunningService] = []

    def start(env: dict[str, str], wait: bool = True, port: int | None = None,
              release: Path | None = None) -> RunningService:
        started.append(launch(release or release_dir, env, tmp_path / f"service-{len(started)}.log", wait, port))
        return started[-1]

    yield start
    for running in started:
        stop_service(running)


@pytest.fixture
def api_key(app_secrets: dict[str, str]) -> str:
    return app_secrets["PAYMENTS_API_KEY"]


@pytest.fixture
def admin_key(app_secrets: dict[str, str]) -> str:
    return app_secrets["PAYMENTS_ADMIN_KEY"]


@pytest.fixture
def smoke_key(app_secrets: dict[str, str]) -> str:
    return app_secrets["PAYMENTS_SMOKE_KEY"]


def metric_value(text: str, series: str) -> float:
    """The value of one exact series line of a /metrics text, e.g. 'refunds_total'."""
    for line in text.splitlines():
        name, _sep, value = line.rpartition(" ")
        if name == series:
            return float(value)
    raise AssertionError(f"series {series} not found in:\n{text}")

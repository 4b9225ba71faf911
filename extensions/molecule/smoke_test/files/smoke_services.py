"""Starts, on loopback, what the smoke_test role talks to: the lab's Stripe emulator, a throw-away PostgreSQL 15 cluster
with the service's schema, redis-server with a password, and one instance of the lab's payment service (gunicorn) with
a webhook endpoint registered in the emulator. Every process detaches and leaves its pid file in the state directory;
`stop` ends them. The service's settings go to service.env.json (mode 0600) for the scenario's inventory.

PostgreSQL refuses to run as root, so under root the cluster runs as the postgres user in a directory of its own
(a private state directory under root's home is out of its reach); services.json records it and `stop` removes it."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

LAB = Path(__file__).resolve().parents[4] / "lab"
SERVICE_SOURCE = LAB / "payment_service"
PG_BIN = Path(os.environ.get("PAYMENTS_MOLECULE_PG_BIN", "/usr/lib/postgresql/15/bin"))
STRIPE_ACCOUNT = "acct_1MoleculeSmoke0001"
CORS_ORIGIN = "https://shop.payments.molecule"
START_TIMEOUT_S = 30.0
PROCESSES = ("service", "stripe", "redis")  # stopped in this order, then PostgreSQL


def wait_for(check, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"smoke_services: timed out waiting for {what}")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def as_postgres() -> dict:
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def start_postgres(state: Path, port: int, password: str) -> Path:
    if os.geteuid() == 0:
        base = Path(tempfile.mkdtemp(prefix="payments-molecule-pg-"))
        shutil.chown(base, "postgres", "postgres")
    else:
        base = state / "postgres"
        base.mkdir(mode=0o700)
    pwfile = base / "pw"
    write_private(pwfile, password)
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run([str(PG_BIN / "initdb"), "-D", str(base / "data"), "-U", "postgres", "--auth=scram-sha-256",
                    f"--pwfile={pwfile}", "--no-sync"], check=True, stdout=subprocess.DEVNULL, **as_postgres())
    pwfile.unlink()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off"
    subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "postgres.log"), "-o", options,
                    "-w", "start"], check=True, stdout=subprocess.DEVNULL, **as_postgres())
    return base


def psql(port: int, password: str, user: str, dbname: str, sql: str) -> None:
    env = dict(os.environ, PGPASSWORD=password)
    subprocess.run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", dbname,
                    "-v", "ON_ERROR_STOP=1", "-q"], input=sql, text=True, env=env, check=True, stdout=subprocess.DEVNULL)


def create_schema(port: int, superuser_password: str, service_password: str) -> None:
    """The service's role and database, then every migration of the release in plan order."""
    psql(port, superuser_password, "postgres", "postgres",
         f"CREATE ROLE payments LOGIN PASSWORD '{service_password}';\nCREATE DATABASE payments OWNER payments;\n")
    plan = SERVICE_SOURCE / "migrations" / "deploy"
    for script in sorted(plan.glob("*.sql")):
        psql(port, service_password, "payments", "payments", script.read_text())


def start_redis(state: Path, port: int, password: str) -> None:
    (state / "redis").mkdir(mode=0o700)
    config = state / "redis" / "redis.conf"
    write_private(config, f'port {port}\nbind 127.0.0.1\nrequirepass {password}\nsave ""\nappendonly no\n'
                          f"dir {state / 'redis'}\ndaemonize yes\npidfile {state / 'redis.pid'}\n"
                          f"logfile {state / 'redis' / 'redis.log'}\n")
    subprocess.run(["redis-server", str(config)], check=True, stdout=subprocess.DEVNULL)
    wait_for(lambda: listening(port), "redis-server to listen")


def start_stripe(state: Path, port: int, key: str) -> str:
    keys = state / "stripe-keys.json"
    write_private(keys, json.dumps({"account": STRIPE_ACCOUNT, "keys": [key]}))
    with open(state / "stripe.log", "wb") as log:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with  # detached: `stop` ends it by its pid file
            [sys.executable, "-m", "stripe_emulator", "--host", "127.0.0.1", "--port", str(port), "--keys-file", str(keys),
             "--quiet"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=state, start_new_session=True,
            env=dict(os.environ, PYTHONPATH=str(LAB)))
    (state / "stripe.pid").write_text(f"{proc.pid}\n")
    wait_for(lambda: listening(port), "the Stripe emulator to listen")
    return f"http://127.0.0.1:{port}"


def register_webhook(stripe_url: str, key: str, service_port: int) -> str:
    """The endpoint Stripe delivers the service's events to; its signing secret is only in this answer."""
    form = urllib.parse.urlencode([("url", f"http://127.0.0.1:{service_port}/webhooks/stripe"),
                                   ("enabled_events[]", "*")]).encode()
    request = urllib.request.Request(f"{stripe_url}/v1/webhook_endpoints", data=form, method="POST",
                                     headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (loopback)
        return str(json.load(answer)["secret"])


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:  # noqa: S310 (loopback)
            return answer.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def start_service(state: Path, port: int, version: str, env: dict[str, str]) -> None:
    """The service's source with a release manifest, as a release artifact unpacks, run by gunicorn."""
    sys.path.insert(0, str(LAB))
    import build_release  # pylint: disable=import-outside-toplevel  # the lab's own manifest writer

    release = state / "release"
    shutil.copytree(SERVICE_SOURCE, release, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    (release / "manifest.json").write_bytes(build_release.manifest(version))
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
               "--daemon", "--pid", str(state / "service.pid"), "--access-logfile", str(state / "service.log"),
               "--error-logfile", str(state / "service.log"), "payment_service.wsgi:application"]
    subprocess.run(command, cwd=release, env=dict(os.environ, **env), check=True, stdin=subprocess.DEVNULL)
    wait_for(lambda: healthy(port), f"the payment service to be ready on port {port} (see {state / 'service.log'})")


def start(args: argparse.Namespace) -> None:
    state = Path(args.state)
    stripe_key = f"sk_test_51Molecule{secrets.token_hex(16)}"
    pg_super, pg_service, redis_password = (secrets.token_hex(16) for n in range(3))
    services = {"postgres_dir": "", "ports": {"service": args.service_port, "stripe": args.stripe_port,
                                              "postgres": args.postgres_port, "redis": args.redis_port}}
    services_file = state / "services.json"
    services["postgres_dir"] = str(start_postgres(state, args.postgres_port, pg_super))
    services_file.write_text(json.dumps(services))  # from here `stop` knows what to stop
    create_schema(args.postgres_port, pg_super, pg_service)
    start_redis(state, args.redis_port, redis_password)
    stripe_url = start_stripe(state, args.stripe_port, stripe_key)
    env = {
        "DATABASE_URL": f"postgresql://payments:{pg_service}@127.0.0.1:{args.postgres_port}/payments",
        "REDIS_URL": f"redis://:{redis_password}@127.0.0.1:{args.redis_port}/0",
        "STRIPE_SECRET_KEY": stripe_key, "STRIPE_API_BASE": stripe_url,
        "STRIPE_WEBHOOK_SECRET": register_webhook(stripe_url, stripe_key, args.service_port),
        "ENCRYPTION_KEY": secrets.token_hex(32), "HASH_SALT": secrets.token_hex(16),
        "PAYMENTS_API_KEY": secrets.token_hex(16), "PAYMENTS_ADMIN_KEY": secrets.token_hex(16),
        "PAYMENTS_SMOKE_KEY": secrets.token_hex(16), "PAYMENTS_CORS_ORIGINS": CORS_ORIGIN,
        "SERVICE_INSTANCE": f"app1-{args.colour}", "SERVICE_COLOUR": args.colour,
    }
    write_private(state / "service.env.json", json.dumps(env))
    start_service(state, args.service_port, args.version, env)


def gone(pid: int) -> bool:
    """Whether a process has exited (a zombie left for its parent to reap counts as exited)."""
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except FileNotFoundError:
        return True


def stop_pid_file(pid_file: Path) -> None:
    """SIGTERM to the process a pid file names and wait for it to exit; a pid file naming no process is removed."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return
    wait_for(lambda: gone(pid), f"pid {pid} to exit")
    pid_file.unlink(missing_ok=True)


def stop(args: argparse.Namespace) -> None:
    state = Path(args.state)
    for name in PROCESSES if args.only is None else [args.only]:
        stop_pid_file(state / f"{name}.pid")
    if args.only is not None:
        return
    try:
        services = json.loads((state / "services.json").read_text())
    except (OSError, ValueError):
        return
    base = Path(services["postgres_dir"])
    if (base / "data" / "postmaster.pid").exists():
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "-w", "stop"], check=True,
                       stdout=subprocess.DEVNULL, **as_postgres())
    if base.name.startswith("payments-molecule-pg-"):
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    starting = sub.add_parser("start")
    starting.add_argument("--state", required=True)
    for name in ("service", "stripe", "postgres", "redis"):
        starting.add_argument(f"--{name}-port", type=int, required=True)
    starting.add_argument("--version", required=True)
    starting.add_argument("--colour", choices=["blue", "green"], required=True)
    stopping = sub.add_parser("stop")
    stopping.add_argument("--state", required=True)
    stopping.add_argument("--only", choices=PROCESSES, help="stop this one process only (and keep the others)")
    args = parser.parse_args()
    if args.action == "start":
        start(args)
    else:
        stop(args)


if __name__ == "__main__":
    main()

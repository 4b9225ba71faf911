"""labctl: start, stop and describe the local lab (real servers on 127.0.0.1, state under one directory)."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

import yaml

import build_release
import release_attestation
import signoffs
import ssh_hosts

REPO = Path(__file__).resolve().parent.parent
LAB_SRC = REPO / "lab"
INVENTORY = REPO / "inventories" / "lab"
LAB_VARS = Path("group_vars") / "all" / "lab.yml"
MONITORING_VARS = Path("group_vars") / "all" / "monitoring.yml"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
STRIPE_ACCOUNT = "acct_1PaymentsLab0001"
DATABASES = ("payments", "payments_staging")
BACKUP_BUCKET = "payments-backups"
LAB_PROGRAMS = ("postgres", "redis", "stripe", "smtp", "s3", "artifacts", "haproxy",
                "prometheus", "alertmanager", "alert-receiver")  # besides one per app host
ENVIRONMENT_GROUPS = {"production": "production_app", "staging": "staging_app"}
# Production app hosts app1..appN (labctl up --app-hosts N): app1 and app2 are inventories/lab's, app3..app16 get
# FLEET_PORT_BASE + 10 * i + 1 (blue) and + 2 (green), 27031/27032 .. 27161/27162: a block that no other port of a
# lab reaches, nor those of a lab moved by an accepted --port-offset (200, 400, 600, ...), below the ephemeral range.
DEFAULT_APP_HOSTS = 2
MAX_APP_HOSTS = 16
FLEET_PORT_BASE = 27000
# Load balancers lb1..lbN (labctl up --load-balancers N): lb1 is inventories/lab's (lab_ports), lb2..lb4 get
# FLEET_PORT_BASE + 10 * i + 5..8 (production, staging, then their HTTPS ports): 27025..27048, in the fleet's block but
# on last digits (5-8) that no app host's port (1, 2) has, so no fleet and no moved lab meets them.
LB_PORTS = ("production", "staging", "production_https", "staging_https")
MAX_LOAD_BALANCERS = 4


def state_dir() -> Path:
    return Path(os.environ.get("PAYMENTS_LAB_DIR") or REPO / ".lab").resolve()


def venv_bin() -> Path:
    return Path(sys.executable).parent


def host_python() -> Path:
    """The interpreter the lab's hosts run modules on (inventories/lab: ansible_python_interpreter), beside the venv."""
    venv = venv_bin().parent
    return venv.with_name(venv.name + "-hosts") / "bin" / "python"


def inventory_dir(state: Path | None = None) -> Path:
    """The lab's inventory: inventories/lab, or the copy that `up --port-offset` (moved ports: a second lab beside the
    first, for suites that run at the same time) or `up --app-hosts` (a fleet) wrote into the state directory."""
    moved = (state or state_dir()) / "inventory"
    return moved if (moved / "hosts.yml").exists() else INVENTORY


def load_topology(inventory: Path | None = None) -> dict:
    """Ports and hosts come from the lab inventory, so the servers and the inventory agree."""
    inventory = inventory or inventory_dir()
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())["all"]["children"]
    settings = yaml.safe_load((inventory / LAB_VARS).read_text())
    monitoring = yaml.safe_load((inventory / MONITORING_VARS).read_text())
    apps = {}
    for group in ("production_app", "staging_app"):
        for name, hostvars in hosts[group]["hosts"].items():
            apps[name] = {"group": group, "ports": hostvars["payments_colour_ports"]}
    # The first load balancer serves on the lab's ports; every other one on the ports its host variables name.
    lbs = {name: (hostvars or {}).get("lab_lb_ports") or {port: settings["lab_ports"][port] for port in LB_PORTS}
           for name, hostvars in hosts["loadbalancers"]["hosts"].items()}
    return {"ports": {**settings["lab_ports"], **monitoring["lab_monitoring_ports"]}, "apps": apps,
            "lb": next(iter(lbs)), "lbs": lbs}


def all_ports(topo: dict) -> set[int]:
    return set(topo["ports"].values()) | {port for app in topo["apps"].values() for port in app["ports"].values()} | \
        {port for ports in topo["lbs"].values() for port in ports.values()}


def load_balancers(count: int, offset: int = 0) -> dict[str, dict[str, int]]:
    """The load balancers of a lab with COUNT of them and their frontend ports moved by OFFSET."""
    if not 1 <= count <= MAX_LOAD_BALANCERS:
        raise SystemExit(f"labctl: --load-balancers {count}: a lab runs 1 to {MAX_LOAD_BALANCERS} load balancers")
    lab_ports = yaml.safe_load((INVENTORY / LAB_VARS).read_text())["lab_ports"]
    lbs = {"lb1": {name: lab_ports[name] + offset for name in LB_PORTS}}
    for index in range(2, count + 1):
        lbs[f"lb{index}"] = {name: FLEET_PORT_BASE + 10 * index + 5 + rank + offset for rank, name in enumerate(LB_PORTS)}
    return lbs


def lb_hostvars(name: str, ports: dict[str, int]) -> dict:
    """The inventory variables of a load balancer after the first: its own ports, admin socket, map file, frontends,
    certificate checks (the lab's one HAProxy certificate, checked by its IP address) and journal directory."""
    root = f"{{{{ lab_state_dir }}}}/hosts/{name}"
    return {
        "lab_lb_ports": ports,
        "traffic_lb_admin_socket": f"{root}/run/haproxy/admin.sock",
        "traffic_lb_map_file": f"{root}/etc/haproxy/colours.map",
        "traffic_frontend_urls": {env: f"http://127.0.0.1:{ports[env]}" for env in ("production", "staging")},
        "traffic_switch_tls_endpoints": {env: {"host": "127.0.0.1", "port": ports[f"{env}_https"], "server_name": "127.0.0.1",
                                               "ca_path": "{{ lab_tls_ca_file }}"} for env in ("production", "staging")},
        "deploy_journal_dir": f"{root}/var/lib/payments/journal",
    }


def fleet(app_hosts: int, offset: int = 0) -> dict[str, dict[str, int]]:
    """The production app hosts of a lab with APP_HOSTS of them, and their colour ports moved by OFFSET."""
    if not 1 <= app_hosts <= MAX_APP_HOSTS:
        raise SystemExit(f"labctl: --app-hosts {app_hosts}: a lab runs 1 to {MAX_APP_HOSTS} production app hosts")
    listed = yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"]["children"]["production_app"]["hosts"]
    hosts = {}
    for index in range(1, app_hosts + 1):
        name = f"app{index}"
        ports = listed[name]["payments_colour_ports"] if name in listed else \
            {"blue": FLEET_PORT_BASE + 10 * index + 1, "green": FLEET_PORT_BASE + 10 * index + 2}
        hosts[name] = {colour: port + offset for colour, port in ports.items()}
    return hosts


def reserved_ports() -> set[int]:
    """Every port the first lab may take: inventories/lab's, the largest fleet's and the SSH hosts'."""
    base = load_topology(INVENTORY)
    return all_ports(base) | {port for ports in fleet(MAX_APP_HOSTS).values() for port in ports.values()} | \
        {port for ports in load_balancers(MAX_LOAD_BALANCERS).values() for port in ports.values()} | \
        set(ssh_hosts.ssh_ports().values())


def moved_ports(offset: int) -> set[int]:
    """The first lab's ports (with the largest fleet), each moved by OFFSET."""
    return {port + offset for port in reserved_ports() - set(ssh_hosts.ssh_ports().values())}


def lab_layout(state: Path) -> tuple[int, int]:
    """(port offset, production app hosts) of the lab in STATE, as its inventory says: (0, 2) without a copy."""
    topo = load_topology(inventory_dir(state))
    offset = topo["ports"]["postgres"] - load_topology(INVENTORY)["ports"]["postgres"]
    return offset, sum(1 for app in topo["apps"].values() if app["group"] == "production_app")


def lab_load_balancer_count(state: Path) -> int:
    """How many load balancers the lab in STATE has, as its inventory says (1 without a copy)."""
    return len(load_topology(inventory_dir(state))["lbs"])


def write_moved_inventory(state: Path, offset: int, app_hosts: int = DEFAULT_APP_HOSTS, lb_count: int = 1) -> Path:
    """A copy of inventories/lab in STATE/inventory with every port moved by OFFSET and the state directory pinned,
    so that ansible-playbook -i STATE/inventory/hosts.yml drives this lab and no other (with APP_HOSTS production app
    hosts, see write_fleet_inventory). Refuses an offset that makes any port meet one the first lab may take (with
    any fleet, or its SSH hosts)."""
    moved = moved_ports(offset)
    if offset <= 0 or max(moved) > 65535 or moved & reserved_ports():
        raise SystemExit(f"labctl: --port-offset {offset} moves the lab's ports onto the first lab's or out of range; "
                         "choose another (200 is free)")
    return write_fleet_inventory(state, app_hosts, offset, lb_count)


def write_fleet_inventory(state: Path, app_hosts: int, offset: int = 0, lb_count: int = 1) -> Path:
    """A copy of inventories/lab in STATE/inventory whose production_app group is app1..appAPP_HOSTS (see fleet() for
    their ports) and whose loadbalancers group is lb1..lbLB_COUNT (see load_balancers()), every port moved by OFFSET
    (0: the first lab's) and the state directory pinned. The caller checks OFFSET (write_moved_inventory)."""
    hosts = fleet(app_hosts, offset)
    lbs = load_balancers(lb_count, offset)
    target = state / "inventory"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(INVENTORY, target)

    def shift(ports: dict[str, int]) -> dict[str, int]:
        return {name: port + offset for name, port in ports.items()}

    def rewrite(path: Path, change: Callable[[dict], None], note: str = "") -> None:
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text("---\n" + note + yaml.safe_dump(data, sort_keys=False))

    def move_app_ports(inventory: dict) -> None:
        groups = inventory["all"]["children"]
        groups["production_app"]["hosts"] = {name: {"payments_colour_ports": ports} for name, ports in hosts.items()}
        groups["loadbalancers"]["hosts"] = {name: lb_hostvars(name, ports) if name != "lb1" else None
                                            for name, ports in lbs.items()}
        for hostvars in groups["staging_app"]["hosts"].values():
            hostvars["payments_colour_ports"] = shift(hostvars["payments_colour_ports"])

    rewrite(target / "hosts.yml", move_app_ports,
            f"# Written by labctl up (--port-offset {offset}, --app-hosts {app_hosts}, --load-balancers {lb_count}): the "
            "lab inventory with its ports moved, its production app hosts and its load balancers.\n")
    rewrite(target / LAB_VARS, lambda lab: lab.update(lab_ports=shift(lab["lab_ports"]), lab_state_dir=str(state)))
    rewrite(target / MONITORING_VARS,
            lambda monitoring: monitoring.update(lab_monitoring_ports=shift(monitoring["lab_monitoring_ports"])))
    return target


def ensure_secrets(state: Path) -> dict:
    """The lab's secrets, generated once; a newer lab adds the ones an older state lacks."""
    path = state / "secrets.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    values = {
        "postgres_password": secrets.token_urlsafe(18),
        "postgres_superuser_password": secrets.token_urlsafe(18),
        "redis_password": secrets.token_urlsafe(18),
        "api_key": "pk_lab_" + secrets.token_urlsafe(24),
        "admin_key": "ak_lab_" + secrets.token_urlsafe(24),
        # The synthetic checks' token: the API role with its own small rate limit.
        "smoke_key": "smk_lab_" + secrets.token_urlsafe(24),
        # The load test's token: the API role with its own large rate limit, so a load test never spends the
        # customers' budget of the API key.
        "load_key": "ldk_lab_" + secrets.token_urlsafe(24),
        "encryption_key": secrets.token_hex(32),
        "hash_salt": secrets.token_hex(16),
        # One salt per environment, 32 bytes each: production refuses a short salt or one staging shares.
        "hash_salt_production": secrets.token_hex(32),
        "hash_salt_staging": secrets.token_hex(32),
        # The Stripe emulator treats sk_live_/rk_live_ keys as live mode: production gets one, staging a test key.
        "stripe_live_key": "sk_live_lab" + secrets.token_hex(16),
        "stripe_test_key": "sk_test_lab" + secrets.token_hex(16),
        "stripe_restricted_key": "rk_live_lab" + secrets.token_hex(16),
        "stripe_webhook_secret": "whsec_" + secrets.token_hex(16),
    }
    if existing.keys() >= values.keys():
        return existing
    values.update(existing)
    path.touch(mode=0o600)
    path.chmod(0o600)  # also when an older file was looser
    path.write_text(json.dumps(values, indent=2) + "\n")
    return values


def render_stripe_keys(state: Path, creds: dict) -> Path:
    (state / "stripe").mkdir(mode=0o700, parents=True, exist_ok=True)
    (state / "stripe").chmod(0o700)
    path = state / "stripe" / "keys.json"
    path.touch(mode=0o600)
    keys = [creds["stripe_live_key"], creds["stripe_test_key"], creds["stripe_restricted_key"]]
    # pm_lab_live_visa stands in for a real card kept for production's test payments (Stripe refuses test
    # cards with live keys, and so does the emulator).
    path.write_text(json.dumps({"account": STRIPE_ACCOUNT, "keys": keys, "live_cards": {"pm_lab_live_visa": "pm_card_visa"}},
                               indent=2) + "\n")
    return path


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the postgres user when needed."""
    if os.geteuid() != 0:
        return cmd
    if subprocess.run(["id", "-u", "postgres"], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--", *cmd]


def chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def ensure_tls(state: Path) -> Path:
    """The lab's CA and server certificates (lab/playbooks/tls.yml, community.crypto), made when a file is missing or
    a server certificate expires within 30 days; returns the directory (ca.pem, server.pem/.key: PostgreSQL's,
    lb.pem/.key: HAProxy's)."""
    tls = state / "tls"
    files = [tls / name for name in ("ca.pem", "ca.key", "server.pem", "server.key", "lb.pem", "lb.key")]
    if all(path.exists() for path in files) and all(subprocess.run(
            ["openssl", "x509", "-checkend", str(30 * 86400), "-noout", "-in", str(tls / name)],
            capture_output=True, check=False).returncode == 0 for name in ("server.pem", "lb.pem")):
        write_haproxy_bundle(tls)
        return tls
    done = subprocess.run([str(venv_bin() / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(LAB_SRC / "playbooks" / "tls.yml"), "-e", f"lab_tls_dir={tls}",
                           "-e", f"ansible_python_interpreter={venv_bin() / 'python'}"],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    if done.returncode != 0:
        raise SystemExit(f"labctl: making the lab's certificates failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    write_haproxy_bundle(tls)
    return tls


def write_haproxy_bundle(tls: Path) -> None:
    """HAProxy reads its certificate and key from one file (haproxy.pem, 0600); rewritten when they changed."""
    bundle = tls / "haproxy.pem"
    content = (tls / "lb.pem").read_text() + (tls / "lb.key").read_text()
    if not bundle.exists() or bundle.read_text() != content:
        bundle.touch(mode=0o600)
        bundle.chmod(0o600)
        bundle.write_text(content)


def configure_postgres_tls(state: Path, tls: Path) -> bool:
    """PostgreSQL serves TLS with the lab CA's certificate (clients use sslmode=verify-full); returns whether the
    settings changed (a running server then reloads them)."""
    data = state / "postgres" / "data"
    key = state / "postgres" / "server.key"  # PostgreSQL wants its key owned by its user, mode 0600
    shutil.copyfile(tls / "server.key", key)
    key.chmod(0o600)
    chown_postgres(key)
    settings = (f"# Written by labctl: TLS with the lab CA's server certificate.\nssl = on\n"
                f"ssl_cert_file = '{tls / 'server.pem'}'\nssl_key_file = '{key}'\nssl_min_protocol_version = 'TLSv1.2'\n")
    path = data / "lab-tls.conf"
    changed = not path.exists() or path.read_text() != settings
    path.write_text(settings)
    chown_postgres(path)
    conf = data / "postgresql.conf"
    if "include_if_exists = 'lab-tls.conf'" not in conf.read_text():
        with conf.open("a") as out:
            out.write("include_if_exists = 'lab-tls.conf'\n")
        changed = True
    return changed


def init_postgres(state: Path, topo: dict, creds: dict) -> None:
    data = state / "postgres" / "data"
    run = state / "run" / "postgres"
    run.mkdir(parents=True, exist_ok=True)
    chown_postgres(run)
    if (data / "PG_VERSION").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    chown_postgres(data)
    pwfile = state / "postgres" / "superuser.pw"
    pwfile.write_text(creds["postgres_superuser_password"] + "\n")
    pwfile.chmod(0o600)
    chown_postgres(pwfile)
    subprocess.run(as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile),
                                "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"]),
                   check=True, stdout=subprocess.DEVNULL)
    pwfile.unlink()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"\n# lab\nlisten_addresses = '127.0.0.1'\nport = {topo['ports']['postgres']}\n"
                   f"unix_socket_directories = '{run}'\nmax_connections = 200\n")


def create_databases(state: Path, topo: dict, creds: dict) -> None:
    """The service's role and one empty database per environment (idempotent); the deploy's migrate phase
    creates the schema from the release's migrations. Each database gets the amcheck extension, which only a superuser
    may create, and the service role the right to run its check (payments.deploy.pg_amcheck runs as that role)."""
    sock = str(state / "run" / "postgres")
    port = str(topo["ports"]["postgres"])
    psql = [str(PG_BIN / "psql"), "-h", sock, "-p", port, "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt",
            "-d", "postgres"]

    def query(sql: str) -> str:
        return subprocess.run(as_postgres([*psql, "-c", sql]), capture_output=True, text=True, check=True).stdout.strip()

    if not query("SELECT 1 FROM pg_roles WHERE rolname = 'payments'"):
        password = creds["postgres_password"].replace("'", "''")
        # Through stdin so that the password is not in any process' argv.
        subprocess.run(as_postgres(psql), input=f"CREATE ROLE payments LOGIN PASSWORD '{password}';", text=True,
                       check=True)
    for database in DATABASES:
        if not query(f"SELECT 1 FROM pg_database WHERE datname = '{database}'"):
            query(f"CREATE DATABASE {database} OWNER payments")
        subprocess.run(as_postgres([*psql[:-1], database]), text=True, check=True, capture_output=True,
                       input="CREATE EXTENSION IF NOT EXISTS amcheck;\n"
                             "GRANT EXECUTE ON FUNCTION bt_index_check(regclass, boolean) TO payments;\n")


def create_bucket(topo: dict) -> None:
    """The backup bucket on the lab's S3 server (idempotent)."""
    import boto3  # pylint: disable=import-outside-toplevel

    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{topo['ports']['s3']}", region_name="us-east-1",
                      aws_access_key_id="lab", aws_secret_access_key="lab-secret")
    if BACKUP_BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BACKUP_BUCKET)


def supervisor_base(root: Path, name: str, foreground: bool) -> str:
    return f"""[unix_http_server]
file={root}/run/supervisor.sock
chmod=0700

[supervisord]
logfile={root}/var/log/supervisor/supervisord.log
pidfile={root}/run/supervisord.pid
childlogdir={root}/var/log/supervisor
identifier={name}
nodaemon={"true" if foreground else "false"}
user=root

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{root}/run/supervisor.sock
"""


def program(name: str, command: str, log_dir: Path, **extra: str) -> str:
    lines = [f"[program:{name}]", f"command={command}", "autostart=true", "autorestart=true", "startsecs=1",
             "stopwaitsecs=30", f"stdout_logfile={log_dir}/{name}.log", "redirect_stderr=true"]
    lines += [f"{key}={value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n\n"


def haproxy_paths(state: Path, topo: dict, lb: str | None = None) -> tuple[Path, Path]:
    """A load balancer host's (the first by default) HAProxy configuration and colour map."""
    etc = state / "hosts" / (lb or topo["lb"]) / "etc" / "haproxy"
    return etc / "haproxy.cfg", etc / "colours.map"


def haproxy_program(topo: dict, lb: str) -> str:
    """The supervisor program of a load balancer's HAProxy: haproxy for the first, haproxy-lbN for the others."""
    return "haproxy" if lb == topo["lb"] else f"haproxy-{lb}"


def haproxy_config(state: Path, topo: dict, lb: str | None = None) -> str:
    """HAProxy's configuration of a load balancer (the first by default) for the inventory's app hosts."""
    lb = lb or topo["lb"]
    lb_root = state / "hosts" / lb
    template = (LAB_SRC / "templates" / "haproxy.cfg").read_text()
    backends = []
    for env, group in (("production", "production_app"), ("staging", "staging_app")):
        for colour in ("blue", "green"):
            servers = "".join(f"    server {host} 127.0.0.1:{app['ports'][colour]} check\n"
                              for host, app in topo["apps"].items() if app["group"] == group)
            # The service's load balancer check: the process and its database only, so that a Stripe or Redis
            # outage degrades the service instead of emptying every backend at once.
            backends.append(f"backend {env}_{colour}\n    option httpchk GET /healthz/lb\n"
                            f"    http-check expect status 200\n{servers}")
    ports = topo["lbs"][lb]
    return template.format(admin_socket=lb_root / "run" / "haproxy" / "admin.sock",
                           map_file=haproxy_paths(state, topo, lb)[1], production_port=ports["production"],
                           staging_port=ports["staging"], production_https_port=ports["production_https"],
                           staging_https_port=ports["staging_https"], tls_bundle=state / "tls" / "haproxy.pem",
                           backends="\n".join(backends))


def render_haproxy(state: Path, topo: dict, keep_existing: bool = False, lb: str | None = None) -> Path:
    """Write a load balancer's HAProxy configuration (left as it is with keep_existing, when there is one) and a first
    map file: a load balancer added to a lab starts on the colours the first one routes to."""
    lb = lb or topo["lb"]
    lb_root = state / "hosts" / lb
    for sub in ("etc/haproxy", "run/haproxy"):
        (lb_root / sub).mkdir(parents=True, exist_ok=True)
    path, map_file = haproxy_paths(state, topo, lb)
    first_map = haproxy_paths(state, topo)[1]
    if not map_file.exists():  # the live colour is state: never reset it on a re-run
        map_file.write_text(first_map.read_text() if first_map.exists() else "production blue\nstaging blue\n")
    if not (keep_existing and path.exists()):
        path.write_text(haproxy_config(state, topo, lb))
    return path


def servers_without_lb_check(topo: dict) -> list[str]:
    """App colours that run a release without /healthz/lb (they answer 404): its check would take them out."""
    missing = []
    for host, app in topo["apps"].items():
        for colour, port in sorted(app["ports"].items()):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/lb", timeout=2).close()
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    missing.append(f"{host}-{colour}")
            except OSError:
                pass  # not running: nothing to take out
    return missing


def render_redis(state: Path, topo: dict, creds: dict) -> Path:
    """Redis with AUTH, serving TLS only (the lab CA's certificate, TLS 1.2 or newer; clients need no certificate)."""
    (state / "redis").mkdir(parents=True, exist_ok=True)
    path = state / "redis" / "redis.conf"
    path.touch(mode=0o600)
    tls = state / "tls"
    path.write_text(f"bind 127.0.0.1\nport 0\ntls-port {topo['ports']['redis']}\ntls-cert-file {tls / 'server.pem'}\n"
                    f"tls-key-file {tls / 'server.key'}\ntls-ca-cert-file {tls / 'ca.pem'}\ntls-auth-clients no\n"
                    f"tls-protocols \"TLSv1.2 TLSv1.3\"\nrequirepass {creds['redis_password']}\n"
                    f"dir {state / 'redis'}\nsave \"\"\nappendonly no\nprotected-mode yes\n")
    return path


def render_app_host(state: Path, host: str) -> Path:
    root = state / "hosts" / host
    for sub in ("etc/supervisor/conf.d", "run", "var/log/supervisor", "var/log/payments", "opt/payments"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    path = root / "etc" / "supervisor" / "supervisord.conf"
    path.write_text(supervisor_base(root, host, foreground=True) + f"[include]\nfiles = {root}/etc/supervisor/conf.d/*.conf\n")
    return path


def render_lab_supervisor(state: Path, topo: dict, creds: dict, keep_haproxy_cfg: bool = False) -> Path:
    """One supervisor for the lab's servers; each app host's own supervisor runs under it."""
    logs = state / "var" / "log" / "supervisor"
    logs.mkdir(parents=True, exist_ok=True)
    (state / "run").mkdir(exist_ok=True)
    bindir = venv_bin()
    conf = supervisor_base(state, "payments-lab", foreground=False)
    conf += program("postgres", f"{PG_BIN / 'postgres'} -D {state / 'postgres' / 'data'}", logs,
                    user="postgres" if os.geteuid() == 0 else "", stopsignal="INT", priority="10")
    redis_conf = render_redis(state, topo, creds)
    # The file's digest in the program's settings: `supervisorctl update` restarts Redis when its settings changed.
    conf += program("redis", f"/usr/bin/redis-server {redis_conf}", logs, priority="10",
                    environment=f'LAB_REDIS_CONF_SHA256="{hashlib.sha256(redis_conf.read_bytes()).hexdigest()}"')
    conf += program("stripe", f"{bindir / 'python'} -m stripe_emulator --host 127.0.0.1 --port {topo['ports']['stripe']}"
                    f" --keys-file {render_stripe_keys(state, creds)} --state-file {state / 'stripe' / 'state.json'}",
                    logs, priority="10", environment=f'PYTHONPATH="{LAB_SRC}"')
    conf += program("s3", f"{bindir / 'moto_server'} -H 127.0.0.1 -p {topo['ports']['s3']}", logs, priority="10")
    conf += program("smtp", f"{bindir / 'python'} -m smtp_sink --smtp-port {topo['ports']['smtp']}"
                    f" --http-port {topo['ports']['mailbox']} --maildir {state / 'mail'}", logs, priority="10",
                    environment=f'PYTHONPATH="{LAB_SRC}"')
    conf += program("artifacts", f"{bindir / 'python'} -m http.server {topo['ports']['artifacts']} --bind 127.0.0.1"
                    f" --directory {state / 'artifacts'}", logs, priority="10")
    for lb in topo["lbs"]:
        conf += program(haproxy_program(topo, lb), f"/usr/sbin/haproxy -W -db -f {render_haproxy(state, topo, keep_haproxy_cfg, lb)}",
                        logs, priority="20", stopsignal="USR1")
    conf += monitoring_programs(state, topo, logs)
    for host in topo["apps"]:
        conf += program(f"host-{host}", f"{bindir / 'supervisord'} -c {render_app_host(state, host)}", logs,
                        priority="30", stopwaitsecs="60")
    for name, command in ssh_hosts.programs(state).items():
        conf += program(name, command, logs, priority="30", stopsignal="TERM")
    conf = conf.replace("user=\n", "")
    path = state / "supervisord.conf"
    path.write_text(conf)
    return path


def monitoring_paths(state: Path) -> dict[str, Path]:
    """The lab's monitoring files: the same layout as the monitoring role's settings in inventories/lab."""
    root = state / "monitoring"
    return {"root": root, "prometheus": root / "prometheus", "config": root / "prometheus" / "prometheus.yml",
            "rules": root / "prometheus" / "rules", "targets": root / "prometheus" / "targets" / "payments",
            "tsdb": root / "prometheus" / "data", "alertmanager": root / "alertmanager",
            "alertmanager_config": root / "alertmanager" / "alertmanager.yml", "receiver_log": root / "alerts.jsonl"}


def colour_release(port: int) -> str:
    """The release a colour runs (its /version), or "unknown" when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=2) as answer:
            return str(json.load(answer).get("version") or "unknown")
    except (OSError, ValueError):
        return "unknown"


def initial_targets(topo: dict, environment: str) -> list[dict]:
    """One file_sd target group per colour of each app host of the environment (the role's targets.json.j2)."""
    return [{"targets": [f"127.0.0.1:{port}"],
             "labels": {"environment": environment, "colour": colour, "host": host, "release": colour_release(port)}}
            for host, app in topo["apps"].items() if app["group"] == ENVIRONMENT_GROUPS[environment]
            for colour, port in sorted(app["ports"].items())]


def fleet_targets(topo: dict, environment: str, current: list[dict]) -> list[dict]:
    """The scrape targets of the inventory's app hosts of the environment, each colour's release kept from CURRENT (as
    the monitoring role's targets.json.j2 keeps it): what a targets file becomes when the fleet changed."""
    releases = {group["labels"]["colour"]: group["labels"].get("release", "unknown")
                for group in current if "colour" in group.get("labels", {})}
    return [{"targets": [f"127.0.0.1:{port}"],
             "labels": {"environment": environment, "colour": colour, "host": host,
                        "release": releases.get(colour, "unknown")}}
            for host, app in topo["apps"].items() if app["group"] == ENVIRONMENT_GROUPS[environment]
            for colour, port in sorted(app["ports"].items())]


def prometheus_config(state: Path, topo: dict) -> dict:
    """The first prometheus.yml: what the monitoring role renders with the lab inventory's settings."""
    paths, ports = monitoring_paths(state), topo["ports"]
    return {
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]}]},
        "rule_files": [f"{paths['rules']}/*.rules.yml"],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{ports['prometheus']}"]}]},
            {"job_name": "payments", "metrics_path": "/metrics", "scheme": "http",
             "file_sd_configs": [{"files": [f"{paths['targets']}/*.json"]}]},
        ],
    }


def alertmanager_config(topo: dict) -> str:
    """Every alert goes to the lab's receiver, within about a second of reaching Alertmanager."""
    return yaml.safe_dump({
        "route": {"receiver": "lab", "group_by": ["alertname", "environment"], "group_wait": "1s",
                  "group_interval": "5s", "repeat_interval": "1h"},
        "receivers": [{"name": "lab", "webhook_configs": [
            {"url": f"http://127.0.0.1:{topo['ports']['alert_receiver']}/alerts", "send_resolved": True}]}],
    }, sort_keys=False)


def render_monitoring(state: Path, topo: dict) -> bool:
    """Write the monitoring files. prometheus.yml and the targets are written only when missing: the monitoring role
    owns them afterwards (its rules, the release labels of each deploy). alertmanager.yml is the lab's own and is
    rewritten. Returns whether alertmanager.yml changed."""
    paths = monitoring_paths(state)
    for key in ("rules", "targets", "tsdb", "alertmanager"):
        paths[key].mkdir(parents=True, exist_ok=True)
    if not paths["config"].exists():
        paths["config"].write_text("# Written by labctl; the payments.deploy.monitoring role owns it from its first run.\n"
                                   + yaml.safe_dump(prometheus_config(state, topo), sort_keys=False))
    for environment in ENVIRONMENT_GROUPS:
        targets = paths["targets"] / f"{environment}.json"
        if not targets.exists():
            targets.write_text(json.dumps(initial_targets(topo, environment), indent=2) + "\n")
        else:
            current = json.loads(targets.read_text())
            wanted = fleet_targets(topo, environment, current)
            if [group["targets"] for group in current] != [group["targets"] for group in wanted]:
                targets.write_text(json.dumps(wanted, indent=2) + "\n")  # the fleet changed (up --app-hosts)
    config = alertmanager_config(topo)
    changed = not paths["alertmanager_config"].exists() or paths["alertmanager_config"].read_text() != config
    if changed:
        paths["alertmanager_config"].write_text(config)
    return changed


def monitoring_programs(state: Path, topo: dict, logs: Path) -> str:
    """Prometheus (HTTP reload enabled), Alertmanager (no cluster) and the webhook receiver, on loopback."""
    paths, ports = monitoring_paths(state), topo["ports"]
    conf = program("prometheus", f"/usr/bin/prometheus --config.file={paths['config']}"
                   f" --storage.tsdb.path={paths['tsdb']} --storage.tsdb.retention.time=2d"
                   f" --web.listen-address=127.0.0.1:{ports['prometheus']} --web.enable-lifecycle", logs, priority="15")
    conf += program("alertmanager", f"/usr/bin/prometheus-alertmanager --config.file={paths['alertmanager_config']}"
                    f" --storage.path={paths['alertmanager'] / 'data'}"
                    f" --web.listen-address=127.0.0.1:{ports['alertmanager']} --cluster.listen-address=", logs,
                    priority="15")
    conf += program("alert-receiver", f"{venv_bin() / 'python'} -m alert_receiver --port {ports['alert_receiver']}"
                    f" --log {paths['receiver_log']}", logs, priority="10", environment=f'PYTHONPATH="{LAB_SRC}"')
    return conf


def build_artifacts(state: Path, source: Path = build_release.DEFAULT_SOURCE) -> list[str]:
    """Build the lab's releases, and build them again when the service's source (or the builder) changed since:
    builds are reproducible, so an artifact (or checksum file) that differs from a fresh build is stale.
    Returns the versions written."""
    out = state / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for version, faults in build_release.LAB_BUILDS.items():
        tarball = out / f"{build_release.NAME}-{version}.tar.gz"
        checksum = tarball.with_name(tarball.name + ".sha256")
        expected = hashlib.sha256(build_release.artifact(source, version, faults)).hexdigest()
        current = hashlib.sha256(tarball.read_bytes()).hexdigest() if tarball.exists() else ""
        recorded = checksum.read_text() if checksum.exists() else ""
        if current != expected or recorded != f"{expected}  {tarball.name}\n":
            build_release.build(source, version, out, faults)
            written.append(version)
    return written


def attest_artifacts(state: Path) -> list[str]:
    """Write each lab release's test attestation (NAME-VERSION.tar.gz.tests.json) from a real run of the service's
    suites, when it is missing, of another artifact or a week old (docs/release-test-report.md). Returns the versions."""
    return release_attestation.write_attestations(state / "artifacts", build_release.LAB_BUILDS, build_release.NAME,
                                                  python=str(venv_bin() / "python"))


def sign_artifacts(state: Path) -> Path:
    """Sign every lab release and its test attestation with minisign, as a release pipeline does (the lab's key has no
    password and stays in the lab state); returns the public key file. inventories/lab does not ask for signatures of
    releases, the example inventory does; the lab's deploy checks the attestations' signatures."""
    keys = state / "signing"
    keys.mkdir(mode=0o700, exist_ok=True)
    secret, public = keys / "release.key", keys / "release.pub"
    if not secret.exists():
        subprocess.run(["minisign", "-G", "-W", "-p", str(public), "-s", str(secret)], check=True, capture_output=True)
    artifacts = state / "artifacts"
    for signed in sorted([*artifacts.glob("*.tar.gz"), *artifacts.glob("*.tar.gz" + release_attestation.SUFFIX)]):
        signature = signed.with_name(signed.name + ".minisig")
        if not signature.exists() or signature.stat().st_mtime < signed.stat().st_mtime:
            release_attestation.sign(signed, secret)
    return public


def supervisorctl(state: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv_bin() / "supervisorctl"), "-c", str(state / "supervisord.conf"), *args],
                          capture_output=True, text=True, check=check)


def supervisor_running(state: Path) -> bool:
    sock = state / "run" / "supervisor.sock"
    return sock.exists() and supervisorctl(state, "pid", check=False).returncode == 0


def wait_for(label: str, probe, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"labctl: {label} did not come up within {timeout:.0f}s (see {state_dir() / 'var' / 'log' / 'supervisor'})")


def tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def port_in_use(port: int) -> bool:
    try:
        return tcp_open(port)
    except OSError:
        return False


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as answer:
        return answer.status < 500


def endpoints(state: Path, topo: dict) -> dict:
    """Every endpoint of the lab; credentials stay in secrets_file (mode 0600), never printed."""
    ports = topo["ports"]
    lb_root = state / "hosts" / topo["lb"]
    return {
        "production_url": f"http://127.0.0.1:{ports['production']}",
        "staging_url": f"http://127.0.0.1:{ports['staging']}",
        "production_https_url": f"https://127.0.0.1:{ports['production_https']}",
        "staging_https_url": f"https://127.0.0.1:{ports['staging_https']}",
        "postgres_dsn": f"postgresql://payments@127.0.0.1:{ports['postgres']}/payments",
        "redis_url": f"rediss://127.0.0.1:{ports['redis']}/0?ssl_ca_certs={state / 'tls' / 'ca.pem'}&ssl_cert_reqs=required",
        "s3_endpoint": f"http://127.0.0.1:{ports['s3']}",
        "stripe_api": f"http://127.0.0.1:{ports['stripe']}",
        "artifacts_url": f"http://127.0.0.1:{ports['artifacts']}",
        "smtp_url": f"smtp://127.0.0.1:{ports['smtp']}",
        "mailbox_url": f"http://127.0.0.1:{ports['mailbox']}",
        "prometheus_url": f"http://127.0.0.1:{ports['prometheus']}",
        "alertmanager_url": f"http://127.0.0.1:{ports['alertmanager']}",
        "alert_receiver_url": f"http://127.0.0.1:{ports['alert_receiver']}",
        "haproxy_admin_socket": str(lb_root / "run" / "haproxy" / "admin.sock"),
        "haproxy_map_file": str(lb_root / "etc" / "haproxy" / "colours.map"),
        "secrets_file": str(state / "secrets.json"),
        "tls_ca_file": str(state / "tls" / "ca.pem"),
        "release_signing_public_key": str(state / "signing" / "release.pub"),
        "state_dir": str(state),
        "inventory": str(inventory_dir(state) / "hosts.yml"),
        **ssh_hosts.endpoints(state),
        "load_balancers": {lb: {
            "production_url": f"http://127.0.0.1:{lb_ports['production']}",
            "staging_url": f"http://127.0.0.1:{lb_ports['staging']}",
            "production_https_url": f"https://127.0.0.1:{lb_ports['production_https']}",
            "staging_https_url": f"https://127.0.0.1:{lb_ports['staging_https']}",
            "admin_socket": str(state / "hosts" / lb / "run" / "haproxy" / "admin.sock"),
            "map_file": str(haproxy_paths(state, topo, lb)[1]),
        } for lb, lb_ports in topo["lbs"].items()},
    }


def settle_inventory(state: Path, offset: int, asked_hosts: int | None, ssh: bool = False,
                     asked_lbs: int | None = None) -> int:
    """The inventory of the lab in STATE for `up`: inventories/lab itself, or a copy in STATE/inventory with moved ports
    (OFFSET) and/or a fleet (ASKED_HOSTS production app hosts; None: as many as the lab has now, 2 for a new lab)
    and/or more load balancers (ASKED_LBS; None: as many as the lab has now, 1 for a new lab).
    Refuses, before anything changes, a count out of range, another app host count on a running lab (a load balancer
    count may change: `up` starts or stops its HAProxy), a fleet with the SSH hosts and another offset on a running
    lab. Returns the number of production app hosts. (Load balancers after lb1 are reached with the local connection
    only: inventories/lab-ssh lists lb1.)"""
    # Without --app-hosts (or --port-offset) a lab keeps the layout its inventory has: the fleet that runs stays.
    current_offset, current_hosts = lab_layout(state)
    current_lbs = lab_load_balancer_count(state)
    app_hosts = current_hosts if asked_hosts is None else asked_hosts
    lb_count = current_lbs if asked_lbs is None else asked_lbs
    fleet(app_hosts)  # refuses a count out of range before anything changes
    load_balancers(lb_count)
    if app_hosts != current_hosts and supervisor_running(state):
        raise SystemExit(f"labctl: the lab in {state} runs {current_hosts} production app host(s), not {app_hosts}: "
                         f"stop it with 'labctl down' (its data is kept), then run 'labctl up --app-hosts {app_hosts}' "
                         "(a host it adds serves nothing until the next deploy)")
    if app_hosts != DEFAULT_APP_HOSTS and (ssh or ssh_hosts.enabled(state)):
        raise SystemExit(f"labctl: the SSH lab has {DEFAULT_APP_HOSTS} production app hosts (inventories/lab-ssh); "
                         "--app-hosts needs a lab without --ssh")
    changed = asked_hosts is not None or asked_lbs is not None or app_hosts != current_hosts or lb_count != current_lbs
    if offset:
        if state == (REPO / ".lab").resolve():
            raise SystemExit("labctl: --port-offset needs its own state directory (PAYMENTS_LAB_DIR)")
        if supervisor_running(state) and current_offset != offset:
            raise SystemExit(f"labctl: the lab in {state} runs on other ports; 'labctl down' it first")
        write_moved_inventory(state, offset, app_hosts, lb_count)
    elif current_offset and changed:
        write_moved_inventory(state, current_offset, app_hosts, lb_count)  # a moved lab keeps its ports
    elif (app_hosts != DEFAULT_APP_HOSTS or lb_count != 1) and changed:
        write_fleet_inventory(state, app_hosts, 0, lb_count)
    elif changed:
        shutil.rmtree(state / "inventory", ignore_errors=True)  # back to inventories/lab itself
    return app_hosts


def cmd_up(args: argparse.Namespace) -> int:
    if not host_python().exists():
        raise SystemExit(f"labctl: the hosts' interpreter {host_python()} is missing: `make host-venv` builds it")
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    offset = getattr(args, "port_offset", 0)
    settle_inventory(state, offset, getattr(args, "app_hosts", None), getattr(args, "ssh", False),
                     getattr(args, "load_balancers", None))
    topo = load_topology()
    if getattr(args, "ssh", False):
        if offset or state != (REPO / ".lab").resolve():
            raise SystemExit("labctl: --ssh is for the first lab only (its SSH ports are in inventories/lab-ssh)")
        if os.geteuid() != 0:
            raise SystemExit("labctl: --ssh starts sshd and creates the deploy user: run it as root")
    ssh = getattr(args, "ssh", False) or ssh_hosts.enabled(state)
    if ssh:
        ssh_hosts.prepare(state)
    creds = ensure_secrets(state)
    init_postgres(state, topo, creds)
    reload_postgres = configure_postgres_tls(state, ensure_tls(state))
    for version in build_artifacts(state):
        print(f"built payment-service {version} (the service's source changed since the last build)")
    for version in attest_artifacts(state):
        print(f"tested payment-service {version}: its test attestation was missing, stale or of another build")
    sign_artifacts(state)
    signoffs.write_signoffs(state)
    # the advisory database the deploy's dependency scan reads (docs/security-scan.md): a copy in the state directory,
    # so that a collection installed elsewhere scans against the same data
    shutil.copytree(REPO / "lab" / "advisories", state / "advisories", dirs_exist_ok=True)
    running = supervisor_running(state)
    # Load balancers whose configuration changed (a new one is started by `supervisorctl update` instead).
    reload_lbs = [lb for lb in topo["lbs"] if running and haproxy_paths(state, topo, lb)[0].exists()
                  and haproxy_paths(state, topo, lb)[0].read_text() != haproxy_config(state, topo, lb)]
    # A running lab whose colours run releases from before /healthz/lb keeps HAProxy's configuration: its check
    # would mark every one of them down.
    outdated = servers_without_lb_check(topo) if reload_lbs else []
    if outdated:
        print(f"labctl: HAProxy keeps its configuration: {', '.join(outdated)} run(s) a release without /healthz/lb; "
              "deploy releases built from this source (or start afresh with 'labctl down --purge'), then run "
              "'labctl up' again")
    reload_alertmanager = render_monitoring(state, topo) and running
    conf = render_lab_supervisor(state, topo, creds, keep_haproxy_cfg=bool(outdated))
    if running:
        supervisorctl(state, "update")
        supervisorctl(state, "start", "all", check=False)
        for lb in reload_lbs if not outdated else []:
            reload_haproxy(state, haproxy_paths(state, topo, lb)[0], haproxy_program(topo, lb))
    else:
        wanted = {**topo["ports"], **{f"{lb} {name}": port for lb, ports in topo["lbs"].items() if lb != topo["lb"]
                                      for name, port in ports.items()},
                  **({f"ssh-{h}": p for h, p in ssh_hosts.ssh_ports().items()} if ssh else {})}
        busy = [f"{name} ({port})" for name, port in wanted.items() if port_in_use(port)]
        if busy:
            raise SystemExit(f"labctl: ports already in use by another process: {', '.join(busy)}; "
                             "stop it (another checkout's lab? run its 'labctl down') and retry")
        subprocess.run([str(venv_bin() / "supervisord"), "-c", str(conf)], check=True,
                       start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("supervisord", lambda: supervisor_running(state))
    forget_removed_load_balancers(state, topo)
    ports = topo["ports"]
    wait_for("postgres", lambda: tcp_open(ports["postgres"]))
    if running and reload_postgres:
        subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "reload", "-s", "-D", str(state / "postgres" / "data")]),
                       check=True)
    wait_for("redis", lambda: tcp_open(ports["redis"]))
    wait_for("s3", lambda: http_ok(f"http://127.0.0.1:{ports['s3']}/"))
    wait_for("stripe", lambda: http_ok(f"http://127.0.0.1:{ports['stripe']}/_emulator/health"))
    wait_for("artifacts", lambda: http_ok(f"http://127.0.0.1:{ports['artifacts']}/"))
    wait_for("smtp sink", lambda: http_ok(f"http://127.0.0.1:{ports['mailbox']}/health"))
    for lb, info in endpoints(state, topo)["load_balancers"].items():
        wait_for(f"haproxy of {lb}", lambda path=info["admin_socket"]: Path(path).exists())
    wait_for("prometheus", lambda: http_ok(f"http://127.0.0.1:{ports['prometheus']}/-/ready"))
    wait_for("alertmanager", lambda: http_ok(f"http://127.0.0.1:{ports['alertmanager']}/-/ready"))
    wait_for("alert receiver", lambda: http_ok(f"http://127.0.0.1:{ports['alert_receiver']}/health"))
    if reload_alertmanager:
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{ports['alertmanager']}/-/reload",
                                                      method="POST"), timeout=10).close()
    for host in topo["apps"]:
        wait_for(f"supervisor of {host}", lambda h=host: (state / "hosts" / h / "run" / "supervisor.sock").exists())
    if ssh:
        for host, port in ssh_hosts.ssh_ports().items():
            wait_for(f"sshd of {host}", lambda p=port: tcp_open(p))
    create_databases(state, topo, creds)
    create_bucket(topo)
    # A program that listens is still STARTING for supervisord's startsecs: `status` (below, and any caller's) only
    # says the lab is up once every program is RUNNING.
    wait_for("every program", lambda: all(s == "RUNNING" for s in program_states(state).values()))
    print(f"lab is up: state in {state}")
    return cmd_status(argparse.Namespace(json=False))


def forget_removed_load_balancers(state: Path, topo: dict) -> None:
    """A load balancer the lab no longer has (its HAProxy stopped by `supervisorctl update`) loses its colour map, so
    that when it is added again it starts on the colours the first one routes to, not on those it had then."""
    for root in (state / "hosts").glob("lb*"):
        if root.name not in topo["lbs"]:
            haproxy_paths(state, topo, root.name)[1].unlink(missing_ok=True)


def reload_haproxy(state: Path, cfg: Path, program_name: str = "haproxy") -> None:
    """A changed configuration is checked, then loaded without dropping a connection (master-worker reload; the live
    colour is in the map file, which the reload reads again)."""
    check = subprocess.run(["/usr/sbin/haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise SystemExit(f"labctl: the new HAProxy configuration {cfg} is invalid:\n{check.stdout}{check.stderr}")
    supervisorctl(state, "signal", "USR2", program_name)
    print(f"HAProxy reloaded with the new configuration ({program_name})")


def cmd_down(args: argparse.Namespace) -> int:
    state = state_dir()
    if supervisor_running(state):
        supervisorctl(state, "shutdown", check=False)
        wait_for("supervisord shutdown", lambda: not supervisor_running(state) and not
                 (state / "run" / "supervisord.pid").exists(), timeout=90)
    if args.purge and state.exists():
        shutil.rmtree(state)
        print(f"lab state removed: {state}")
    print("lab is down")
    return 0


def program_states(state: Path) -> dict:
    if not supervisor_running(state):
        return {}
    out = supervisorctl(state, "status", check=False).stdout
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}


def cmd_status(args: argparse.Namespace) -> int:
    state, topo = state_dir(), load_topology()
    info = endpoints(state, topo)
    info["app_hosts"] = topo["apps"]
    info["programs"] = program_states(state)
    # A lab started by an older labctl lacks newer programs (the SMTP sink): not running until `up` adds them.
    expected = {*LAB_PROGRAMS, *(f"host-{host}" for host in topo["apps"]), *ssh_hosts.programs(state),
                *(haproxy_program(topo, lb) for lb in topo["lbs"])}
    info["running"] = expected <= info["programs"].keys() and all(s == "RUNNING" for s in info["programs"].values())
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if key == "app_hosts":
                value = ", ".join(f"{host} {app['ports']['blue']}/{app['ports']['green']}" for host, app in value.items())
            if key == "load_balancers":
                value = ", ".join(f"{lb} {urllib.parse.urlsplit(lb_info['production_url']).port}/"
                                  f"{urllib.parse.urlsplit(lb_info['staging_url']).port}" for lb, lb_info in value.items())
            if key != "programs":
                print(f"{key:22} {value}")
        for name, status in info["programs"].items():
            print(f"  {name:20} {status}")
    return 0 if info["running"] else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the lab (idempotent)")
    up.add_argument("--port-offset", type=int, default=0,
                    help="a second lab: every port moved by this much, its inventory written to the state directory "
                         "(PAYMENTS_LAB_DIR, required)")
    up.add_argument("--app-hosts", type=int, default=None, metavar="N",
                    help=f"production app hosts app1..appN (1 to {MAX_APP_HOSTS}), the lab's inventory written to the "
                         f"state directory; default: the lab's current count ({DEFAULT_APP_HOSTS} for a new lab). "
                         "A running lab's count changes only after 'labctl down'")
    up.add_argument("--load-balancers", type=int, default=None, metavar="N",
                    help=f"load balancers lb1..lbN (1 to {MAX_LOAD_BALANCERS}), each a HAProxy with its own frontend ports, "
                         "admin socket and colour map in front of every app host; lb2..lbN are listed in the lab's "
                         "inventory written to the state directory. Default: the lab's current count (1 for a new lab). "
                         "May change on a running lab (a load balancer added starts on the first one's colours)")
    up.add_argument("--ssh", action="store_true",
                    help="also run every host as an SSH target (one sshd each, a deploy user with sudo; needs root); "
                         "kept on later `up` runs until `down --purge`")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop every lab process")
    down.add_argument("--purge", action="store_true", help="also delete the lab state directory")
    down.set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="show endpoints and process states")
    status.add_argument("--json", action="store_true", help="print the endpoints as one JSON object")
    status.set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

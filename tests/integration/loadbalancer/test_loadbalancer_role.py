"""The loadbalancer role against a real HAProxy in master-worker mode: rendering, idempotence, a reload under load
that adds an app host, refused inputs that leave the live configuration serving, and TLS."""

from __future__ import annotations

import datetime
import ipaddress
import http.client
import json
import ssl
import subprocess
import threading
import time
from pathlib import Path

from lb_lab import HAPROXY, LoadBalancerLab, RoleRun
from loopback_ports import free_port
from tls_clients import tls11_handshake


def get(port: int, path: str = "/version") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def backend_servers(cfg: str) -> dict[str, list[str]]:
    """backend -> its server lines' 'name address:port', parsed from the configuration file."""
    found: dict[str, list[str]] = {}
    current = None
    for line in cfg.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] in ("backend", "frontend", "defaults", "global"):
            current = fields[1] if fields[0] == "backend" else None
            if current:
                found[current] = []
        elif fields[0] == "server" and current:
            found[current].append(f"{fields[1]} {fields[2]}")
    return found


class LoadGenerator:
    """Threads sending GET /version through the frontend, one connection per request and a short pause between two
    requests of a thread (so that the load leaves the role's run some CPU); stops by itself after ``max_requests``
    requests or ``max_seconds`` seconds, or when ``stop()`` is called."""

    def __init__(self, port: int, threads: int = 4, pause: float = 0.005, max_requests: int = 500_000,
                 max_seconds: float = 600.0) -> None:
        self.port, self.pause, self.max_requests, self.max_seconds = port, pause, max_requests, max_seconds
        self.deadline = 0.0
        self.lock = threading.Lock()
        self.sent = self.failed = self.in_flight = 0
        self.errors: list[str] = []
        self.instances: dict[str, int] = {}
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.work, daemon=True) for thread in range(threads)]

    def start(self) -> None:
        self.deadline = time.monotonic() + self.max_seconds  # a bound so that it always ends, never asserted on
        for thread in self.threads:
            thread.start()

    def work(self) -> None:
        while not self.done.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if self.sent >= self.max_requests:
                    break
                self.sent += 1
                self.in_flight += 1
            try:
                status, unused_headers, body = get(self.port)
                ok = status == 200
                instance = json.loads(body)["instance"] if ok else f"HTTP {status}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                ok, instance = False, repr(exc)
            with self.lock:
                self.in_flight -= 1
                if ok:
                    self.instances[instance] = self.instances.get(instance, 0) + 1
                else:
                    self.failed += 1
                    self.errors.append(instance)
            self.done.wait(self.pause)

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.sent, self.failed

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=30)


def test_every_app_host_in_both_backends_and_a_second_run_changes_nothing(lb: LoadBalancerLab) -> None:
    cfg = lb.cfg.read_text()
    backends = backend_servers(cfg)
    for colour in ("blue", "green"):
        assert backends[f"production_{colour}"] == [f"{h} 127.0.0.1:{lb.apps[(h, colour)].port}" for h in ("app1", "app2")]
    assert "option httpchk GET /healthz/lb" in cfg and "http-check expect status 200" in cfg
    assert f"use_backend production_%[str(production),map({lb.map_file},blue)]" in cfg
    assert "master-worker" in cfg
    assert f"stats socket {lb.socket} mode 600 level admin expose-fd listeners" in cfg
    assert lb.map_file.read_text() == "production blue\n"
    check = subprocess.run([HAPROXY, "-c", "-f", str(lb.cfg)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert set(lb.servers()) == {f"production_{c}/{h}" for c in ("blue", "green") for h in ("app1", "app2")}
    assert get(lb.port)[0] == 200

    worker = lb.worker_pid()
    second = lb.run_role()
    assert second.rc == 0, second.output
    assert second.changed() == 0, second.output
    assert not second.ran(lb.SIGNAL_TASK)
    assert lb.worker_pid() == worker  # no reload: the same worker serves
    assert lb.cfg.read_text() == cfg


def test_adding_an_app_host_under_load_reloads_without_failing_a_request(lb: LoadBalancerLab) -> None:
    map_before = lb.map_file.read_text()
    lb.map_file.write_text("production green\n")  # the live colour is state: the role must leave it alone
    old_worker = lb.worker_pid()
    load = LoadGenerator(lb.port)
    load.start()
    try:
        lb.wait_for(lambda: load.snapshot()[0] >= 50, "the load to flow")
        before_run = load.snapshot()[0]
        lb.app_hosts.append("app3")
        run = lb.run_role()
        after_run = load.snapshot()[0]
        during_run = after_run - before_run
        assert run.rc == 0, run.output
        # the load outlived the reload (it was not stopped by its own bounds before the role was done)
        lb.wait_for(lambda: load.snapshot()[0] > after_run + 50, "requests after the role's run")
        assert run.ran(lb.SIGNAL_TASK), run.output
        lb.wait_for(lambda: lb.worker_pid() not in (None, old_worker), "a new worker")
        # the new host then answers through the frontend (the old worker's requests went to blue; now green)
        lb.wait_for(lambda: load.instances.get("app3-green", 0) > 0 or load.done.is_set(), "app3 to answer", attempts=300)
    finally:
        load.stop()
    sent, failed = load.snapshot()
    print(f"\nload through the reload: {sent} requests sent, {failed} failed, {during_run} sent while the role ran; "
          f"answers per instance: {dict(sorted(load.instances.items()))}")
    assert failed == 0, load.errors[:10]
    assert during_run > 0
    assert load.instances.get("app3-green", 0) > 0, load.instances
    assert lb.map_file.read_text() == "production green\n" != map_before
    assert {"production_blue/app3", "production_green/app3"} <= set(lb.servers())
    report = _report(run)
    print(f"role's report: {report}")
    assert report["reason"] == "the configuration changed"
    assert report["servers_added"] == ["production_blue/app3", "production_green/app3"], report
    assert report["servers_removed"] == []
    assert report["compared_with"] == "the servers HAProxy knew before"
    assert len(report["new_workers"]) == 1, report


def _report(run: RoleRun) -> dict:
    """The role's report of the reload (fails the test when the role printed none)."""
    reports = [r["msg"] for r in run.task_results(LoadBalancerLab.REPORT_TASK) if not r.get("skipped")]
    assert len(reports) == 1, run.output
    return reports[0]


def test_a_file_written_but_never_loaded_is_loaded_by_the_next_run(lb: LoadBalancerLab) -> None:
    old_worker = lb.worker_pid()
    lb.app_hosts.remove("app2")
    written = lb.run_role({"loadbalancer_reload": "none"})  # like a run stopped between the write and the reload
    assert written.rc == 0, written.output
    assert not written.ran(lb.SIGNAL_TASK)
    assert "production_blue/app2" in lb.servers() and lb.worker_pid() == old_worker

    run = lb.run_role()
    assert run.rc == 0, run.output
    report = _report(run)
    print(f"\nrole's report: {report}")
    assert run.ran(lb.SIGNAL_TASK)
    assert report["reason"] == "HAProxy runs other servers than the configuration file"
    assert report["servers_removed"] == ["production_blue/app2", "production_green/app2"], report
    assert report["servers_added"] == []
    assert set(lb.servers()) == {"production_blue/app1", "production_green/app1"}
    assert lb.worker_pid() not in (None, old_worker)

    again = lb.run_role()
    assert again.rc == 0 and again.changed() == 0, again.output
    assert not again.ran(lb.SIGNAL_TASK)


def _assert_untouched_and_serving(lb: LoadBalancerLab, cfg: str, worker: int | None) -> None:
    assert lb.cfg.read_text() == cfg
    assert lb.worker_pid() == worker
    assert get(lb.port)[0] == 200


def test_an_invalid_bind_or_option_fails_and_the_live_configuration_keeps_serving(lb: LoadBalancerLab) -> None:
    cfg, worker = lb.cfg.read_text(), lb.worker_pid()

    # caught by the role's own checks, before anything is written
    lb.environments["production"]["bind"] = "nonsense:99999"
    run = lb.run_role()
    assert run.rc != 0
    print(f"\nrefused by the role: {run.failure()}")
    assert 'bind "nonsense:99999"' in run.failure() and "port from 1 to 65535" in run.failure(), run.output
    _assert_untouched_and_serving(lb, cfg, worker)

    # a well-formed but unusable address gets through to HAProxy, which rejects it: its message is the failure
    lb.environments["production"]["bind"] = "nonsense:24199"
    run = lb.run_role()
    assert run.rc != 0
    print(f"refused by HAProxy: {run.failure()}")
    assert "invalid address: 'nonsense'" in run.failure(), run.output
    _assert_untouched_and_serving(lb, cfg, worker)

    # a typo in an option passed through a variable: HAProxy's message names it
    lb.environments["production"]["bind"] = f"127.0.0.1:{lb.port}"
    run = lb.run_role({"loadbalancer_log": "stderr format shrot local0 notice"})
    assert run.rc != 0
    print(f"refused by HAProxy: {run.failure()}")
    assert "unknown log format 'shrot'" in run.failure(), run.output
    _assert_untouched_and_serving(lb, cfg, worker)


def test_an_app_host_without_colour_ports_fails_before_anything_is_written(lb: LoadBalancerLab) -> None:
    cfg, worker = lb.cfg.read_text(), lb.worker_pid()
    lb.app_hosts.append("app3")
    lb.host_vars["app3"] = {"payments_colour_ports": None}
    fresh_cfg, fresh_map = lb.dir / "new" / "haproxy.cfg", lb.dir / "new" / "colours.map"
    run = lb.run_role({"loadbalancer_config_file": str(fresh_cfg), "traffic_lb_map_file": str(fresh_map)})
    assert run.rc != 0
    print(f"\nrefused by the role: {run.failure()}")
    assert "app host 'app3' needs payments_colour_ports" in run.failure(), run.output
    assert not fresh_cfg.exists() and not fresh_map.exists()
    _assert_untouched_and_serving(lb, cfg, worker)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes, serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=import-outside-toplevel
    from cryptography.x509.oid import NameOID  # pylint: disable=import-outside-toplevel

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    pem, ca = directory / "lb.pem", directory / "ca.pem"
    pem.write_bytes(cert_pem + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    pem.chmod(0o600)
    ca.write_bytes(cert_pem)
    return pem, ca


def test_tls_frontend_redirects_plain_http_sends_hsts_and_refuses_old_tls(lb: LoadBalancerLab) -> None:
    pem, ca = _self_signed(lb.dir)
    https_port, http_port = free_port(), free_port()
    lb.environments["production"] = {"bind": f"127.0.0.1:{https_port}", "http_bind": f"127.0.0.1:{http_port}",
                                     "tls_certificate": str(pem), "app_group": "production_app"}
    run = lb.run_role({"loadbalancer_hsts_max_age": 600})
    assert run.rc == 0, run.output
    assert run.ran(lb.SIGNAL_TASK)
    cfg = lb.cfg.read_text()
    assert f"bind 127.0.0.1:{https_port} ssl crt {pem} ssl-min-ver TLSv1.2" in cfg
    lb.wait_for(lambda: _https_status(https_port, ca) == 200, "HTTPS to answer")

    ctx = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", https_port, context=ctx, timeout=10)
    conn.request("GET", "/version")
    resp = conn.getresponse()
    body, hsts, version = resp.read(), resp.getheader("Strict-Transport-Security"), conn.sock.version()
    conn.close()
    assert resp.status == 200 and json.loads(body)["instance"].startswith("app")
    assert hsts == "max-age=600"
    assert version in ("TLSv1.2", "TLSv1.3")

    status, headers, unused_body = get(http_port, "/version?x=1")
    assert status == 301
    assert headers["location"] == f"https://127.0.0.1:{http_port}/version?x=1"
    assert "strict-transport-security" not in headers  # HSTS only over HTTPS

    outcome = tls11_handshake(https_port)
    print(f"\nTLS 1.1-only client: {outcome}; default client negotiated {version}")
    if outcome.startswith("client cannot offer"):
        # The local OpenSSL cannot even offer TLS 1.1: the refusal cannot be shown; the negotiated version is >= 1.2.
        assert version in ("TLSv1.2", "TLSv1.3")
    else:
        assert outcome.startswith("refused by the server"), outcome


def _https_status(port: int, ca: Path) -> int:
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=str(ca)), timeout=5)
        conn.request("GET", "/version")
        status = conn.getresponse().status
        conn.close()
        return status
    except (OSError, http.client.HTTPException):
        return 0

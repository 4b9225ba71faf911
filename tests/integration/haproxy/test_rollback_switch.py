"""rollback_switch against a real HAProxy checking /healthz/lb on stdlib app servers that answer /version.

One HAProxy serves every test (each test puts the map, the servers and the journal back as a deploy of 1.1.0 to
green left them). Every /readyz answers 503, as when Stripe or Redis is down for both colours: a flip back must
not care. Most calls run the module in-process (fast); one goes through the ``ansible`` CLI like a playbook would.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import typing as t
from pathlib import Path

import pytest

from loopback_ports import free_port
from real_haproxy import HAPROXY, HAProxyLab, QuietServer, runtime_command
from test_haproxy_switch_real import ansible

JOURNAL = {"kind": "deploy", "environment": "production", "colour_from": "blue", "release_from": "1.0.0",
           "colour_to": "green", "release_to": "1.1.0", "app_hosts": ["app1", "app2"], "switched_at": 1767225600.0,
           "release_sha256": "ab" * 32, "recorded_epoch": 1767225601.0}
HOLDER = {"user": "alice", "controller": "ctl-1", "playbook": "rollback.yml", "operation": "rollback"}


class VersionServer:
    """An app server of one colour: /version names its release, /healthz/lb follows ``lb_ok``, /readyz is 503."""

    def __init__(self, colour: str, name: str, version: str) -> None:
        self.colour, self.name, self.version, self.lb_ok = colour, name, version, True
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                if self.path == "/version":
                    status, body = 200, {"name": "payment-service", "version": app.version,
                                         "instance": f"{app.name}-{app.colour}", "colour": app.colour}
                elif self.path == "/healthz/lb":
                    status, body = (200, {"status": "ok"}) if app.lb_ok else (503, {"status": "database down"})
                elif self.path == "/readyz":
                    status, body = 503, {"status": "degraded", "checks": {"stripe": "error", "redis": "error"}}
                else:
                    status, body = 200, {"colour": app.colour, "version": app.version}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class RollbackLab(HAProxyLab):
    """The lab's shape after a deploy of 1.1.0 to green (blue keeps 1.0.0), health-checked on /healthz/lb."""

    # its own servers and configuration, so HAProxyLab.__init__ is not called
    def __init__(self, directory: Path) -> None:  # pylint: disable=super-init-not-called
        self.dir = directory
        self.socket = str(directory / "admin.sock")
        self.map_file = str(directory / "colours.map")
        self.cfg = directory / "haproxy.cfg"
        self.log = directory / "haproxy.log"
        self.journal_dir = directory / "journal"
        self.port = free_port()
        self.apps = {(colour, name): VersionServer(colour, name, version)
                     for colour, version in (("blue", "1.0.0"), ("green", "1.1.0")) for name in ("app1", "app2")}
        self.cfg.write_text(self.config())
        self.master = None
        self.reset()

    def config(self) -> str:
        backends = ""
        for colour in ("blue", "green"):
            backends += (f"backend production_{colour}\n    option httpchk GET /healthz/lb\n"
                         "    http-check expect status 200\n")
            for name in ("app1", "app2"):
                backends += f"    server {name} 127.0.0.1:{self.apps[(colour, name)].port} check\n"
        return f"""global
    stats socket {self.socket} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    default-server inter 200ms fall 2 rise 2
frontend production
    bind 127.0.0.1:{self.port}
    use_backend production_%[str(production),map({self.map_file},blue)]
{backends}"""

    def reset(self) -> None:
        """Green live with 1.1.0, blue kept with 1.0.0, every server healthy, the journal of that deploy, no lock."""
        Path(self.map_file).write_text("# live colour per environment\nproduction green\n")
        if self.master is not None:
            runtime_command(self.socket, f"set map {self.map_file} production green")
        for (colour, dummy), app in self.apps.items():
            app.version, app.lb_ok = ("1.0.0" if colour == "blue" else "1.1.0"), True
        shutil.rmtree(self.journal_dir, ignore_errors=True)
        (self.journal_dir / "production").mkdir(parents=True)
        (self.journal_dir / "production" / "last-deploy.json").write_text(json.dumps(JOURNAL, indent=2) + "\n")
        if self.master is not None:
            self.wait_until_up()

    @property
    def lock_file(self) -> Path:
        return self.journal_dir / "production" / "deploy.lock"

    def served(self) -> set[tuple[str, str]]:
        """(colour, version) of 6 answers through the frontend, each on a new connection."""
        seen = set()
        for dummy in range(6):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/")
            answer = json.loads(conn.getresponse().read())
            conn.close()
            seen.add((answer["colour"], answer["version"]))
        return seen


@pytest.fixture(scope="module")
def lab(collections_dir: Path) -> t.Iterator[RollbackLab]:
    if not os.access(HAPROXY, os.X_OK):
        pytest.skip("haproxy is not installed")
    if str(collections_dir) not in sys.path:
        sys.path.insert(0, str(collections_dir))  # for the in-process runs
    directory = Path(tempfile.mkdtemp(prefix="rbsw-"))  # short: unix socket paths are limited to 107 bytes
    rollback_lab = RollbackLab(directory)
    try:
        rollback_lab.start()
        yield rollback_lab
    finally:
        rollback_lab.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fresh(lab: RollbackLab) -> RollbackLab:
    lab.reset()
    return lab


def module_args(lab: RollbackLab, **extra: t.Any) -> dict[str, t.Any]:
    return {"environment": "production", "journal_dir": str(lab.journal_dir), "admin_socket": lab.socket,
            "map_file": lab.map_file, "holder": HOLDER, "phase": "switch back", **extra}


def run_in_process(args: dict[str, t.Any], check: bool = False, diff: bool = False) -> dict[str, t.Any]:
    # imported here: the collection is importable only once the lab fixture has put it on sys.path
    # pylint: disable=import-outside-toplevel
    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.payments.deploy.plugins.modules import rollback_switch

    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        rollback_switch.main()
    return json.loads(out.getvalue())


def assert_untouched(lab: RollbackLab) -> None:
    assert lab.runtime_colour() == "green" and lab.file_colour() == "green"
    assert lab.served() == {("green", "1.1.0")}


def test_flips_back_though_readyz_fails_everywhere_then_rerun_is_a_no_op(
        fresh: RollbackLab, collections_dir: Path) -> None:
    lab = fresh
    for app in lab.apps.values():  # Stripe/Redis "down" for both colours: every readiness check fails
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
        conn.request("GET", "/readyz")
        assert conn.getresponse().status == 503
        conn.close()
    assert lab.served() == {("green", "1.1.0")}

    started = time.monotonic()
    result = ansible(collections_dir, "rollback_switch", module_args(lab), "--diff")
    wall = time.monotonic() - started
    assert result.get("failed") is not True, result
    assert result["changed"] is True and result["already_rolled_back"] is False
    assert (result["colour_from"], result["release_from"]) == ("green", "1.1.0")
    assert (result["colour_to"], result["release_to"]) == ("blue", "1.0.0")
    assert result["backend"] == "production_blue" and result["problems"] == []
    assert {name: (s["status"], s["version"], s["colour"]) for name, s in result["servers"].items()} == {
        "app1": ("UP", "1.0.0", "blue"), "app2": ("UP", "1.0.0", "blue")}
    assert result["servers"]["app1"]["addr"] == f"127.0.0.1:{lab.apps[('blue', 'app1')].port}"
    assert f"set map {lab.map_file} production blue" in result["commands"]
    assert result["journal_record"] == JOURNAL
    assert result["diff"]["before"] == "production: green\n" and result["diff"]["after"] == "production: blue\n"
    assert set(result["timings_ms"]) == {"journal", "lock", "checks", "flip", "total"}
    assert lab.runtime_colour() == "blue" and lab.file_colour() == "blue"
    assert Path(lab.map_file).read_text().startswith("# live colour per environment\n")  # comments kept
    assert lab.served() == {("blue", "1.0.0")}
    lock = json.loads(lab.lock_file.read_text())
    assert lock["token"] == result["token"] and lock["holder"] == HOLDER and lock["phase"] == "switch back"
    print(f"\nrollback_switch through the ansible CLI: module timings {result['timings_ms']} ms, "
          f"ansible run {wall:.2f} s wall")

    again = run_in_process(module_args(lab, token=result["token"]))
    assert again["changed"] is False and again["already_rolled_back"] is True, again
    assert "already routes to blue" in again["msg"]
    assert not [c for c in again["commands"] if c.startswith(("set ", "add "))]
    assert again["token"] is None  # the caller's token is the caller's to keep
    assert lab.served() == {("blue", "1.0.0")}
    print(f"rollback_switch in-process, already rolled back: {again['timings_ms']} ms")


def test_check_mode_checks_everything_and_changes_nothing(fresh: RollbackLab) -> None:
    lab = fresh
    result = run_in_process(module_args(lab), check=True, diff=True)
    assert result.get("failed") is not True, result
    assert result["changed"] is True and result["switched_at"] is None and result["token"] is None
    assert {s["version"] for s in result["servers"].values()} == {"1.0.0"}
    assert result["diff"]["after"] == "production: blue\n"
    assert "would switch back from green (1.1.0) to blue (1.0.0)" in result["msg"]
    assert not [c for c in result["commands"] if c.startswith(("set ", "add "))]
    assert not lab.lock_file.exists()
    assert_untouched(lab)
    print(f"\nrollback_switch in-process, check mode: {result['timings_ms']} ms")


def test_refuses_when_a_server_is_down_in_haproxy(fresh: RollbackLab) -> None:
    lab = fresh
    lab.apps[("blue", "app2")].lb_ok = False  # its own process/PostgreSQL check fails: HAProxy takes it out
    lab.wait_for(lambda: lab.statuses()["production_blue/app2"] == "DOWN", "blue app2 to be DOWN")
    result = run_in_process(module_args(lab))
    assert result["failed"] is True
    assert "refusing to switch back to blue (1.0.0)" in result["msg"]
    assert "app2 (127.0.0.1:" in result["msg"] and "is DOWN in HAProxy" in result["msg"]
    assert "app1" not in " ".join(result["problems"]) and result["shared_outage"] is False
    assert "lock of production this call took was released" in result["msg"] and result["token"] is None
    assert not lab.lock_file.exists()
    assert_untouched(lab)


def test_flips_back_when_both_colours_are_down_alike(fresh: RollbackLab) -> None:
    lab = fresh
    for app in lab.apps.values():  # PostgreSQL down: /healthz/lb fails on every server of both colours
        app.lb_ok = False
    lab.wait_for(lambda: all(status == "DOWN" for name, status in lab.statuses().items()
                             if name.split("/")[1] not in ("FRONTEND", "BACKEND")), "every server to be DOWN")
    result = run_in_process(module_args(lab))
    assert result.get("failed") is not True, result
    assert result["changed"] is True and result["shared_outage"] is True and result["problems"] == []
    assert {s["status"] for s in result["servers"].values()} == {"DOWN"}
    assert lab.runtime_colour() == "blue" and lab.file_colour() == "blue"
    assert any("an outage both colours share" in str(w) for w in result["warnings"])


def test_refuses_when_a_server_runs_another_release(fresh: RollbackLab) -> None:
    lab = fresh
    lab.apps[("blue", "app1")].version = "1.1.0"  # somebody started the new release in blue too
    result = run_in_process(module_args(lab))
    assert result["failed"] is True
    assert "runs release 1.1.0, not 1.0.0" in result["msg"] and "app1" in result["msg"]
    assert result["servers"]["app1"]["ok"] is False and result["servers"]["app2"]["ok"] is True
    assert not lab.lock_file.exists()
    assert_untouched(lab)


def test_refuses_while_another_run_holds_the_lock(fresh: RollbackLab) -> None:
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.payments.deploy.plugins.module_utils import _lease

    lab = fresh
    _lease.acquire(str(lab.lock_file), environment="production", lease_seconds=600, phase="migrate",
                   holder={"user": "bob", "playbook": "deploy.yml", "operation": "deploy 1.2.0"})
    held = lab.lock_file.read_text()
    result = run_in_process(module_args(lab))
    assert result["failed"] is True
    assert "held by bob" in result["msg"] and "deploy 1.2.0" in result["msg"] and "phase 'migrate'" in result["msg"]
    assert result["lock"]["holder"]["user"] == "bob" and "token" not in result["lock"]
    assert result["commands"] == []  # HAProxy not even asked
    assert lab.lock_file.read_text() == held
    assert_untouched(lab)

    # a further load balancer of the environment leaves the lock (it lives on the first one) to the first call
    other = run_in_process(module_args(lab, lock=False))
    assert other["changed"] is True and other["token"] is None and "lock" not in other["timings_ms"], other
    assert lab.lock_file.read_text() == held
    assert lab.served() == {("blue", "1.0.0")}


def test_a_switch_left_unfinished_is_the_one_rolled_back(fresh: RollbackLab) -> None:
    lab = fresh
    # a deploy of 1.2.0 to blue flipped, then was killed before its journal record: only its intent says so
    for name in ("app1", "app2"):
        lab.apps[("blue", name)].version = "1.2.0"
    runtime_command(lab.socket, f"set map {lab.map_file} production blue")
    Path(lab.map_file).write_text("production blue\n")
    stale = run_in_process(module_args(lab))
    assert stale["failed"] is True and stale["already_rolled_back"] is True
    assert "already routes to blue, but not to release 1.0.0 (app1 runs 1.2.0, app2 runs 1.2.0)" in stale["msg"]
    assert lab.runtime_colour() == "blue" and not lab.lock_file.exists()

    intent = dict(JOURNAL, colour_from="green", release_from="1.1.0", colour_to="blue", release_to="1.2.0",
                  state="switching")
    (lab.journal_dir / "production" / "switch-intent.json").write_text(json.dumps(intent))
    result = run_in_process(module_args(lab))
    assert result.get("failed") is not True, result
    assert result["unfinished"] is True and result["journal_record"] == intent
    assert (result["colour_from"], result["release_from"], result["colour_to"], result["release_to"]) == (
        "blue", "1.2.0", "green", "1.1.0")
    assert lab.runtime_colour() == "green" and lab.file_colour() == "green"


def test_unknown_backend_fails_before_anything_changes(fresh: RollbackLab) -> None:
    lab = fresh
    (lab.journal_dir / "staging").mkdir()
    (lab.journal_dir / "staging" / "last-deploy.json").write_text(json.dumps(dict(JOURNAL, environment="staging")))
    result = run_in_process(module_args(lab, environment="staging"))
    assert result["failed"] is True
    assert "backend staging_blue is not known to HAProxy" in result["msg"]
    assert not (lab.journal_dir / "staging" / "deploy.lock").exists()
    assert_untouched(lab)


def test_an_unsafe_value_served_by_haproxy_is_refused_and_never_sent_back(fresh: RollbackLab) -> None:
    # pylint: disable=import-outside-toplevel
    from ansible_collections.payments.deploy.plugins.module_utils._haproxy import HAProxyRuntime, restore_runtime_value

    lab = fresh
    injected = "green; disable server production_blue/app1"
    Path(lab.map_file).write_text(f"production {injected}\n")
    lab.reload()
    lab.wait_until_up()
    try:
        result = run_in_process(module_args(lab))
        assert result["failed"] is True
        assert "refusing to switch back" in result["msg"] and "not a plain colour" in result["msg"]
        assert not [c for c in result["commands"] if c.startswith(("set ", "add ", "del "))]
        assert not lab.lock_file.exists() or result["token"] is None

        runtime = HAProxyRuntime(lab.socket)
        restored, how = restore_runtime_value(runtime, lab.map_file, "production", injected)
        assert restored is False and "refusing" in how and runtime.commands == []
        assert lab.statuses()["production_blue/app1"] == "UP"  # the smuggled command never ran
    finally:
        runtime_command(lab.socket, "enable server production_blue/app1")  # were it run after all

"""Helpers for the loadbalancer role tests: a real HAProxy (master-worker) configured by the loadbalancer role through ansible-playbook, in front of small
Python HTTP servers (one per app host and colour). Every port is taken from 24100-24199; every process and thread
started here is stopped at the end."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import typing as t
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "haproxy"))
from real_haproxy import HAPROXY, QuietServer, collections_dir_for_checkout, runtime_command  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from host_python import HOST_PYTHON  # noqa: E402  pylint: disable=wrong-import-position
from loopback_ports import free_port  # noqa: E402  pylint: disable=wrong-import-position

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook", path=str(VENV_BIN)) or shutil.which("ansible-playbook")


class App:
    """One app host's colour: answers /healthz/lb (200) and /version (JSON naming the host and colour)."""

    def __init__(self, host: str, colour: str) -> None:
        self.host, self.colour, self.hits = host, colour, 0
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                if self.path == "/healthz/lb":
                    status, body = 200, "ok\n"
                elif self.path == "/version":
                    app.hits += 1
                    status, body = 200, json.dumps({"version": "1.0.0", "colour": app.colour, "instance": f"{app.host}-{app.colour}"})
                else:
                    status, body = 404, "not found\n"
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if self.path == "/version" else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
                pass

        self.port = free_port()
        self.server = QuietServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class RoleRun(t.NamedTuple):
    rc: int
    output: str
    result: dict  # the json callback's document ({} when stdout was not JSON)

    def changed(self, host: str = "lb1") -> int:
        return self.result["stats"][host]["changed"]

    def task_results(self, name: str) -> list[dict]:
        """The results of every run of the task called ``name`` (skipped ones included)."""
        found = []
        for play in self.result.get("plays", []):
            for task in play["tasks"]:
                if task["task"]["name"].split(" : ", 1)[-1] == name:
                    found.extend(task["hosts"].values())
        return found

    def failure(self) -> str:
        """The messages (and any stdout/stderr) of the failed results: what the operator reads."""
        texts = []
        for play in self.result.get("plays", []):
            for task in play["tasks"]:
                for res in task["hosts"].values():
                    if not res.get("failed"):
                        continue
                    for one in [res, *res.get("results", [])]:  # a loop's items say why it failed
                        texts += [str(one[k]) for k in ("msg", "stderr", "stdout")
                                  if one.get(k) and one[k] != "All assertions passed"]
        return "\n".join(texts) or self.output

    def ran(self, name: str) -> bool:
        return any(not r.get("skipped") for r in self.task_results(name))


class LoadBalancerLab:
    """A temporary host root: inventory, HAProxy configuration, map, pid file and admin socket. The inventory sets the
    traffic_switch role's traffic_lb_admin_socket and traffic_lb_map_file only: the loadbalancer role takes them."""

    SIGNAL_TASK = "Send SIGUSR2 to the master (a new worker takes the listeners; old workers finish their connections)"
    REPORT_TASK = "Report what was loaded"

    def __init__(self, directory: Path, collections: Path) -> None:
        self.dir = directory
        self.collections = collections
        self.cfg = directory / "haproxy.cfg"
        self.map_file = directory / "colours.map"
        self.pid_file = directory / "haproxy.pid"
        self.socket = str(directory / "admin.sock")
        self.log = directory / "haproxy.log"
        self.port = free_port()
        self.apps = {(host, colour): App(host, colour) for host in ("app1", "app2", "app3") for colour in ("blue", "green")}
        self.app_hosts = ["app1", "app2"]
        self.environments: dict[str, dict] = {"production": {"bind": f"127.0.0.1:{self.port}", "app_group": "production_app"}}
        self.host_vars: dict[str, dict] = {}  # per app host overrides
        self.master: subprocess.Popen[bytes] | None = None

    # --- ansible ---
    def inventory(self) -> dict:
        apps = {}
        for host in self.app_hosts:
            apps[host] = {"payments_service_address": "127.0.0.1",
                          "payments_colour_ports": {c: self.apps[(host, c)].port for c in ("blue", "green")}}
            apps[host].update(self.host_vars.get(host, {}))
            apps[host] = {k: v for k, v in apps[host].items() if v is not None}
        lb_vars = {
            "ansible_connection": "local",
            "ansible_python_interpreter": HOST_PYTHON,
            "traffic_lb_admin_socket": self.socket,
            "traffic_lb_map_file": str(self.map_file),
            "loadbalancer_config_file": str(self.cfg),
            "loadbalancer_pid_file": str(self.pid_file),
            "loadbalancer_haproxy_binary": HAPROXY,
            "loadbalancer_environments": self.environments,
            "loadbalancer_reload_check_delay": 1,
        }
        if os.geteuid() != 0:  # only root can start workers as another user
            lb_vars.update(loadbalancer_user="", loadbalancer_group="")
        return {"all": {"children": {"loadbalancers": {"hosts": {"lb1": lb_vars}},
                                     "production_app": {"hosts": apps}}}}

    def run_role(self, extra_vars: dict | None = None) -> RoleRun:
        inventory = self.dir / "inventory.json"
        inventory.write_text(json.dumps(self.inventory(), indent=2))
        cmd = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(REPO / "playbooks" / "loadbalancer.yml")]
        if extra_vars:
            extras = self.dir / "extra-vars.json"
            extras.write_text(json.dumps(extra_vars))
            cmd += ["-e", f"@{extras}"]
        config = self.dir / "ansible.cfg"  # not the checkout's: its callbacks would write to stdout
        config.write_text("[defaults]\n")
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(self.collections), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
                   ANSIBLE_CONFIG=str(config), ANSIBLE_RETRY_FILES_ENABLED="false", ANSIBLE_NOCOLOR="1",
                   PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        proc = subprocess.run(cmd, cwd=self.dir, env=env, capture_output=True, text=True, check=False, timeout=600)
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            result = {}
        return RoleRun(proc.returncode, proc.stdout + proc.stderr, result)

    # --- haproxy ---
    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.master = subprocess.Popen([HAPROXY, "-W", "-db", "-f", str(self.cfg)], stdout=log, stderr=subprocess.STDOUT)
        self.wait_for(lambda: self.worker_pid() is not None, "the admin socket to answer")
        self.wait_for(self.all_up, "every server to be UP")

    def stop(self) -> None:
        if self.master is not None and self.master.poll() is None:
            self.master.send_signal(signal.SIGTERM)
            try:
                self.master.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.master.kill()
                self.master.wait(timeout=10)
        for app in self.apps.values():
            app.stop()

    def worker_pid(self) -> int | None:
        try:
            info = runtime_command(self.socket, "show info")
        except OSError:
            return None
        for line in info.splitlines():
            if line.startswith("Pid: "):
                return int(line.split()[1])
        return None

    def servers(self) -> dict[str, str]:
        """backend/server -> status, from the runtime API."""
        rows = runtime_command(self.socket, "show stat").splitlines()[1:]
        return {f"{r.split(',')[0]}/{r.split(',')[1]}": r.split(",")[17] for r in rows
                if r and "," in r and r.split(",")[1] not in ("FRONTEND", "BACKEND")}

    def all_up(self) -> bool:
        servers = self.servers()
        return bool(servers) and all(status == "UP" for status in servers.values())

    def wait_for(self, predicate: t.Callable[[], bool], what: str, attempts: int = 150) -> None:
        """Polls (0.1 s apart, a bounded number of times): a bound against hanging, not a timing assertion."""
        for attempt in range(attempts):  # pylint: disable=unused-variable
            if self.master is not None and self.master.poll() is not None:
                raise AssertionError(f"haproxy exited with {self.master.returncode}:\n{self.log.read_text()}")
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"gave up waiting for {what}:\n{self.log.read_text()}")

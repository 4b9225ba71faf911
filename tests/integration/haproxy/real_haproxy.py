"""A real HAProxy in a temporary directory, routing by a colours map to tiny HTTP servers, one pair per colour."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import typing as t
from pathlib import Path
from loopback_ports import free_port

COLLECTION_ROOT = Path(__file__).resolve().parents[3]
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def collections_dir_for_checkout() -> Path:
    """The directory to put on ANSIBLE_COLLECTIONS_PATH: the checkout's own, or a temporary one linking to it."""
    if COLLECTION_ROOT.parent.name == "payments" and COLLECTION_ROOT.parent.parent.name == "ansible_collections":
        return COLLECTION_ROOT.parents[2]
    tmp = Path(tempfile.mkdtemp(prefix="payments-deploy-collections-"))
    (tmp / "ansible_collections" / "payments").mkdir(parents=True)
    (tmp / "ansible_collections" / "payments" / "deploy").symlink_to(COLLECTION_ROOT)
    return tmp


class QuietServer(http.server.ThreadingHTTPServer):
    """Threaded HTTP server that takes HAProxy closing idle connections (on stop or reload) in its stride."""

    daemon_threads = True

    def handle_error(self, request: t.Any, client_address: t.Any) -> None:
        pass


class AppServer:
    """One application server of one colour: ``/readyz`` answers 200 while ``ready``, ``/version`` as the service does
    (release ``version``, colour, instance; counted in ``version_hits``), ``/`` names the colour."""

    def __init__(self, colour: str, name: str) -> None:
        self.colour = colour
        self.name = name
        self.ready = True
        self.version = "1.0.0"
        self.version_hits = 0
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real service
            timeout = 10

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                if self.path == "/readyz":
                    status, body = (200, "ready\n") if app.ready else (503, "not ready\n")
                elif self.path == "/version":
                    app.version_hits += 1
                    status = 200
                    body = json.dumps({"version": app.version, "colour": app.colour, "instance": f"{app.name}-{app.colour}"})
                else:
                    status, body = 200, f"{app.colour} {app.name}\n"
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if self.path == "/version" else "text/plain")
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


def runtime_command(socket_path: str, command: str, timeout: float = 2.0) -> str:
    """Send one runtime API command (independent of the code under test)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


class HAProxyLab:
    """HAProxy (master-worker) with the lab's blue-green shape."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.socket = str(directory / "admin.sock")
        self.map_file = str(directory / "colours.map")
        self.cfg = directory / "haproxy.cfg"
        self.log = directory / "haproxy.log"
        self.port = free_port()
        self.apps = {(colour, name): AppServer(colour, name) for colour in ("blue", "green") for name in ("app1", "app2")}
        Path(self.map_file).write_text("production blue\nstaging green\n")
        os.chmod(self.map_file, 0o640)
        self.cfg.write_text(self.config())
        self.master: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        backends = ""
        for colour in ("blue", "green"):
            backends += f"backend production_{colour}\n    option httpchk GET /readyz\n"
            for name in ("app1", "app2"):
                backends += f"    server {name} 127.0.0.1:{self.apps[(colour, name)].port} check\n"
        return f"""global
    stats socket {self.socket} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    default-server inter 500ms fall 2 rise 2
frontend production
    bind 127.0.0.1:{self.port}
    use_backend production_%[str(production),map({self.map_file},blue)]
{backends}"""

    def start(self) -> None:
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        with open(self.log, "wb") as log:
            self.master = subprocess.Popen([HAPROXY, "-W", "-db", "-f", str(self.cfg)], stdout=log, stderr=subprocess.STDOUT)
        self.wait_for(lambda: self.worker_pid() is not None, "the admin socket to answer")
        self.wait_until_up()

    def stop(self) -> None:
        if self.master is not None and self.master.poll() is None:
            self.master.terminate()
            try:
                self.master.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.master.kill()
                self.master.wait(timeout=10)
        for app in self.apps.values():
            app.stop()

    def reload(self) -> None:
        """``kill -USR2`` the master: a new worker loads the config and the map file from disk."""
        assert self.master is not None
        old = self.worker_pid()
        os.kill(self.master.pid, signal.SIGUSR2)
        self.wait_for(lambda: self.worker_pid() not in (None, old), "a new worker after the reload")

    def worker_pid(self) -> int | None:
        try:
            info = runtime_command(self.socket, "show info")
        except OSError:
            return None
        for line in info.splitlines():
            if line.startswith("Pid: "):
                return int(line.split()[1])
        return None

    def statuses(self) -> dict[str, str]:
        rows = runtime_command(self.socket, "show stat").splitlines()[1:]
        return {f"{r.split(',')[0]}/{r.split(',')[1]}": r.split(",")[17] for r in rows if r and "," in r}

    def wait_until_up(self, timeout: float = 15.0) -> None:
        def all_up() -> bool:
            return all(status == "UP" for name, status in self.statuses().items() if name.split("/")[1] not in ("FRONTEND", "BACKEND"))

        self.wait_for(all_up, "every server to be UP")

    def wait_for(self, predicate: t.Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.master is not None and self.master.poll() is not None:
                raise AssertionError(f"haproxy exited with {self.master.returncode}:\n{self.log.read_text()}")
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log.read_text()}")

    def runtime_colour(self, key: str = "production") -> str | None:
        for line in runtime_command(self.socket, f"show map {self.map_file}").splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[1] == key:
                return fields[2]
        return None

    def file_colour(self, key: str = "production") -> str | None:
        for line in Path(self.map_file).read_text().splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] == key:
                return fields[1]
        return None

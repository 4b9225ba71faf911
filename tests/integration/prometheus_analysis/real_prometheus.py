"""A real Prometheus in a temporary directory scraping tiny exporters (stdlib HTTP servers) whose counters the tests
control, and a way to run release_analysis in-process against it."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import urllib.parse
import urllib.request
from pathlib import Path
from loopback_ports import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SCRAPE_SECONDS = 1
COLLECTION_ROOT = Path(__file__).resolve().parents[3]
MODULE = "ansible_collections.payments.deploy.plugins.modules.release_analysis"


def collections_dir_for_checkout() -> Path:
    """The directory to put on PYTHONPATH: the checkout's own, or a temporary one linking to it."""
    if COLLECTION_ROOT.parent.name == "payments" and COLLECTION_ROOT.parent.parent.name == "ansible_collections":
        return COLLECTION_ROOT.parents[2]
    tmp = Path(tempfile.mkdtemp(prefix="payments-deploy-collections-"))
    (tmp / "ansible_collections" / "payments").mkdir(parents=True)
    (tmp / "ansible_collections" / "payments" / "deploy").symlink_to(COLLECTION_ROOT)
    return tmp


class Exporter:
    """Serves payments_total{outcome} and process_start_time_seconds like the payment service: the counters grow at
    ``per_second`` payments a second, ``failed_share`` of them failed, on top of ``initial`` payments counted before
    (a process that has been up for a while); ``restart()`` starts the counters again at 0, as a new process does."""

    def __init__(self, per_second: float, failed_share: float, initial: int = 0) -> None:
        self.per_second = per_second
        self.failed_share = failed_share
        self.initial = initial
        self.started = time.time()
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                data = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def restart(self) -> None:
        self.initial, self.started = 0, time.time()

    def render(self) -> str:
        payments = self.initial + int(self.per_second * (time.time() - self.started))
        failed = int(payments * self.failed_share)
        return ("# TYPE payments_total counter\n"
                f'payments_total{{outcome="succeeded"}} {payments - failed}\n'
                f'payments_total{{outcome="failed"}} {failed}\n'
                'payments_total{outcome="pending"} 0\n'
                "# TYPE process_start_time_seconds gauge\n"
                f"process_start_time_seconds {self.started:.3f}\n")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class RealPrometheus:
    """Prometheus 2.x on a free loopback port, scraping each exporter every second with the target labels the
    deploy's Prometheus gives the payment service (environment, colour, host, release)."""

    flags: tuple[str, ...] = ("--storage.tsdb.retention.time=1h",)

    def __init__(self, directory: Path, targets: dict[str, tuple[Exporter, dict[str, str]]]) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        scrape_configs = [{"job_name": name, "static_configs": [
            {"targets": [f"127.0.0.1:{exporter.port}"], "labels": labels}]}
            for name, (exporter, labels) in targets.items()]
        config = {"global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": "1s"},
                  "scrape_configs": scrape_configs}
        (directory / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = directory / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.directory / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.directory / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 *self.flags], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus did not become ready: {self.log.read_text()[-2000:]}")

    def value(self, query: str, at: float | None = None) -> float | None:
        """One instant query's value (at ``at``, epoch seconds) straight from the HTTP API (None for no data)."""
        params = {"query": query} if at is None else {"query": query, "time": f"{at:.3f}"}
        with urllib.request.urlopen(f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params),
                                    timeout=5) as answer:
            result = json.load(answer)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, query: str, timeout: float = 15.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.value(query)
            if value is not None:
                return value
            time.sleep(0.2)
        raise AssertionError(f"no data for {query} within {timeout} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def run_module(collections_dir: Path, work: Path, args: dict[str, t.Any], module: str = MODULE) -> dict[str, t.Any]:
    """The module's JSON result, run as Ansible runs it: a Python process given its arguments in a file."""
    args_file = work / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, "-m", module, str(args_file)], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(collections_dir)}, check=False)
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (rc {done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}") from None

"""The lab's Stripe emulator as a subprocess on a free loopback port, and the ``ansible`` CLI to run the Stripe modules against it."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
from pathlib import Path
from host_python import HOST_PYTHON

COLLECTION_ROOT = Path(__file__).resolve().parents[3]
LAB_DIR = COLLECTION_ROOT / "lab"
EMULATOR_MAIN = LAB_DIR / "stripe_emulator" / "__main__.py"
ANSIBLE = str(Path(sys.executable).with_name("ansible"))

ACCOUNT = "acct_1LabEmulator00001"
KEYS = {
    "live": "sk_live_51LabEmulatorLiveKey0000000000000000001abcd",
    "test": "sk_test_51LabEmulatorTestKey0000000000000000001efgh",
    "restricted_live": "rk_live_51LabEmulatorRestrictedKey000000000001ijkl",
    "restricted_test": "rk_test_51LabEmulatorRestrictedKey000000000001mnop",
}


class StripeEmulator:
    """``python -m stripe_emulator`` on 127.0.0.1, port chosen by the OS and read from its ready line."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.keys_file = directory / "keys.json"
        self.keys_file.write_text(json.dumps({"account": ACCOUNT, "keys": list(KEYS.values())}))
        self.keys_file.chmod(0o600)
        self.log = directory / "emulator.log"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> None:
        env = dict(os.environ, PYTHONPATH=str(LAB_DIR))
        with open(self.log, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stripe_emulator", "--host", "127.0.0.1", "--port", "0", "--keys-file", str(self.keys_file), "--quiet"],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=self.directory,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _unused, _unused2 = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("stripe emulator listening on "):
                    self.url = line.split()[-1]
                    return
                if not line and self.proc.poll() is not None:
                    break
        self.stop()
        raise RuntimeError(f"the Stripe emulator did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    # ----- the admin API and plain API reads, for checking what the modules did

    def call(self, method: str, path: str, body: t.Any = None, key: str | None = None, form: dict[str, str] | None = None) -> t.Any:
        headers = {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if form is not None:
            data = "&".join(f"{k}={v}" for k, v in form.items()).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        self.call("POST", "/_emulator/reset")

    def fault(self, **spec: t.Any) -> None:
        self.call("POST", "/_emulator/faults", spec)

    def requests(self, method: str, path_prefix: str) -> list[dict[str, t.Any]]:
        return self.call("GET", f"/_emulator/requests?method={method}&path_prefix={path_prefix}")["data"]

    def list_all(self, path: str, key: str = KEYS["test"], query: str = "") -> list[dict[str, t.Any]]:
        items: list[dict[str, t.Any]] = []
        after = ""
        while True:
            page = self.call("GET", f"{path}?limit=100{query}{after}", key=key)
            items += page["data"]
            if not page["has_more"]:
                return items
            after = f"&starting_after={page['data'][-1]['id']}"

    def endpoints(self, key: str = KEYS["test"]) -> list[dict[str, t.Any]]:
        return self.list_all("/v1/webhook_endpoints", key)

    def payment_intents(self, key: str = KEYS["test"]) -> list[dict[str, t.Any]]:
        return self.list_all("/v1/payment_intents", key)


def collections_dir_for_checkout() -> Path:
    """The directory to put on ANSIBLE_COLLECTIONS_PATH: the checkout's own, or a temporary one linking to it."""
    if COLLECTION_ROOT.parent.name == "payments" and COLLECTION_ROOT.parent.parent.name == "ansible_collections":
        return COLLECTION_ROOT.parents[2]
    tmp = Path(tempfile.mkdtemp(prefix="payments-deploy-collections-"))
    (tmp / "ansible_collections" / "payments").mkdir(parents=True)
    (tmp / "ansible_collections" / "payments" / "deploy").symlink_to(COLLECTION_ROOT)
    return tmp


class AnsibleRun(t.NamedTuple):
    result: dict[str, t.Any]
    output: str  # stdout and stderr together
    returncode: int


def ansible(collections_dir: Path, module: str, args: dict[str, t.Any], *flags: str, env: dict[str, str] | None = None,
            json_output: bool = True) -> AnsibleRun:
    """Run one module on localhost with the real ``ansible`` CLI; secrets go in through ``env`` like in production."""
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "STRIPE_"))}
    run_env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_dir), ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_DEPRECATION_WARNINGS="0")
    if json_output:
        run_env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    run_env.update(env or {})
    command = [
        ANSIBLE, "localhost", "-i", "localhost,", "-c", "local",
        "-e", f"ansible_python_interpreter={HOST_PYTHON}",
        "-m", f"payments.deploy.{module}", "-a", json.dumps(args), *flags,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=run_env, cwd=collections_dir, timeout=180, check=False)
    output = proc.stdout + proc.stderr
    if not json_output:
        return AnsibleRun({}, output, proc.returncode)
    try:
        report = json.loads(proc.stdout)
        result = report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(f"ansible failed ({proc.returncode}):\n{output}") from exc
    return AnsibleRun(result, output, proc.returncode)

"""The running lab as the smoke_test module sees it, and ``ansible-playbook`` to run the module on the controller."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import typing as t
import urllib.error
import urllib.request
from pathlib import Path
from host_python import HOST_PYTHON

COLLECTION_ROOT = Path(__file__).resolve().parents[3]
LABCTL = COLLECTION_ROOT / "lab" / "labctl"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
# What the module needs from the lab's secrets; a lab made before the smoke key existed lacks it.
NEEDED_SECRETS = ("api_key", "admin_key", "smoke_key", "stripe_test_key")
# The lab's services allow this origin (inventories/lab, PAYMENTS_CORS_ORIGINS).
LAB_CORS_ORIGIN = "https://shop.payments.lab"


def lab_status() -> tuple[dict[str, t.Any] | None, str]:
    """``labctl status --json`` when the lab runs, else None and why not."""
    try:
        proc = subprocess.run([str(LABCTL), "status", "--json"], capture_output=True, text=True, timeout=60,
                              check=False)
        status = json.loads(proc.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return None, f"labctl status failed: {type(exc).__name__}"
    if not status.get("running"):
        return None, "the lab is down (lab/labctl up starts it)"
    return status, ""


def read_secrets(status: dict[str, t.Any]) -> tuple[dict[str, str] | None, str]:
    try:
        secrets = json.loads(Path(status["secrets_file"]).read_text())
    except (OSError, ValueError, KeyError) as exc:
        return None, f"the lab's secrets cannot be read: {type(exc).__name__}"
    missing = [name for name in NEEDED_SECRETS if not secrets.get(name)]
    if missing:
        return None, f"the lab's secrets lack {', '.join(missing)} (a lab made before them: labctl down && labctl up)"
    return secrets, ""


def serving(url: str) -> tuple[bool, str]:
    """Whether anything serves behind a frontend: HAProxy answers its own 503 page when no release runs there."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=10) as response:  # noqa: S310 (loopback)
            return response.status == 200, ""
    except urllib.error.HTTPError as exc:
        if b"No server is available" in exc.read():
            return False, f"nothing serves {url} (no release deployed there: deploy one first)"
        return True, ""  # the service answers, badly: the smoke test is to say how
    except OSError as exc:
        return False, f"{url} cannot be reached: {type(exc).__name__}"


def collections_dir_for_checkout() -> Path:
    """The directory to put on ANSIBLE_COLLECTIONS_PATH: the checkout's own, or a temporary one linking to it."""
    if COLLECTION_ROOT.parent.name == "payments" and COLLECTION_ROOT.parent.parent.name == "ansible_collections":
        return COLLECTION_ROOT.parents[2]
    tmp = Path(tempfile.mkdtemp(prefix="payments-deploy-collections-"))
    (tmp / "ansible_collections" / "payments").mkdir(parents=True)
    (tmp / "ansible_collections" / "payments" / "deploy").symlink_to(COLLECTION_ROOT)
    return tmp


class SmokeRun(t.NamedTuple):
    result: dict[str, t.Any]
    output: str  # stdout and stderr together
    returncode: int


def run_smoke(collections_dir: Path, workdir: Path, args: dict[str, t.Any], secrets: dict[str, str], *flags: str,
              json_output: bool = True) -> SmokeRun:
    """Run payments.deploy.smoke_test in a playbook, with the keys in a 0600 vars file as a vault would give them."""
    vars_file = workdir / "smoke-secrets.json"
    vars_file.touch(mode=0o600)
    vars_file.write_text(json.dumps({"smoke_secrets": secrets}))
    task_args = dict(args, api_key="{{ smoke_secrets.api_key }}", admin_key="{{ smoke_secrets.admin_key }}",
                     smoke_key="{{ smoke_secrets.smoke_key }}", stripe_api_key="{{ smoke_secrets.stripe_test_key }}")
    playbook = workdir / "smoke.yml"  # JSON is YAML
    task = {"name": "Smoke-test the service", "payments.deploy.smoke_test": task_args}
    play = {"name": "Smoke test", "hosts": "localhost", "gather_facts": False, "tasks": [task]}
    playbook.write_text(json.dumps([play]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "STRIPE_"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_dir), ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    if json_output:
        env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    command = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local",
               "-e", f"ansible_python_interpreter={HOST_PYTHON}", "-e", f"@{vars_file}", *flags, str(playbook)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir, timeout=600, check=False)
    output = proc.stdout + proc.stderr
    if not json_output:
        return SmokeRun({}, output, proc.returncode)
    try:
        result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(f"ansible-playbook failed ({proc.returncode}):\n{output[-4000:]}") from exc
    return SmokeRun(result, output, proc.returncode)


def stripe_get(api_base: str, key: str, path: str) -> dict[str, t.Any]:
    """An object from the lab's Stripe emulator, read independently of the module."""
    request = urllib.request.Request(api_base.rstrip("/") + path, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (a loopback URL from labctl)
        return json.loads(response.read())

"""Release artifacts built by lab/build_release.py (one signed with minisign, one signed by another key) and one
holding a '../' member, served by a throw-away HTTP server on a free port, and a way to run the release role's
install (and configure) entry points with ansible-playbook against a temporary directory as the host's root."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import typing as t
import uuid
from pathlib import Path

import pytest
from host_python import HOST_PYTHON

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab"))
import build_release  # noqa: E402  pylint: disable=wrong-import-position

MINISIGN = shutil.which("minisign")
GOOD, WRONG_KEY, TRAVERSAL = "1.0.0", "1.1.0", "9.9.9"


class Releases(t.NamedTuple):
    base_url: str
    directory: Path
    public_key: str  # the base64 line of the trusted key
    key_id: str


def _sign(path: Path, secret: Path) -> None:
    subprocess.run([MINISIGN, "-S", "-s", str(secret), "-m", str(path)], check=True, capture_output=True)


def _key(directory: Path, name: str) -> tuple[str, str, Path]:
    public, secret = directory / f"{name}.pub", directory / f"{name}.key"
    subprocess.run([MINISIGN, "-G", "-W", "-p", str(public), "-s", str(secret)], check=True, capture_output=True)
    text = public.read_text()
    return text.strip().splitlines()[-1], re.findall(r"public key ([0-9A-F]+)", text)[0], secret


def _traversal_artifact(directory: Path) -> None:
    """A release whose archive also writes ../escaped next to the release directory."""
    name = f"{build_release.NAME}-{TRAVERSAL}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, data in ((f"{name}/manifest.json", build_release.manifest(TRAVERSAL)),
                             (f"{name}/../escaped", b"outside\n")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = directory / f"{name}.tar.gz"
    path.write_bytes(buffer.getvalue())
    path.with_name(path.name + ".sha256").write_text(f"{hashlib.sha256(buffer.getvalue()).hexdigest()}  {path.name}\n")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002  pylint: disable=redefined-builtin
        pass


@pytest.fixture(scope="session")
def releases() -> t.Iterator[Releases]:
    if MINISIGN is None:
        pytest.skip("the minisign program is not installed (make system-packages installs it)")
    directory = Path(tempfile.mkdtemp(prefix="release-install-"))
    served = directory / "served"
    for version in (GOOD, WRONG_KEY):
        build_release.build(build_release.DEFAULT_SOURCE, version, served)
    _traversal_artifact(served)
    public, key_id, secret = _key(directory, "release")
    other_secret = _key(directory, "other")[2]
    _sign(served / f"{build_release.NAME}-{GOOD}.tar.gz", secret)
    _sign(served / f"{build_release.NAME}-{WRONG_KEY}.tar.gz", other_secret)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Releases(f"http://127.0.0.1:{server.server_address[1]}", served, public, key_id)
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(directory, ignore_errors=True)


class ServiceUser(t.NamedTuple):
    name: str
    created_by_role: bool  # a fresh name the role has to create (running as root), else the current user


@pytest.fixture(scope="session")
def service_user() -> t.Iterator[ServiceUser]:
    """As root, a user name that does not exist yet (the role creates it; removed at the end); else the current
    user, whom the role finds and leaves alone."""
    if os.geteuid() != 0:
        import pwd  # pylint: disable=import-outside-toplevel
        yield ServiceUser(pwd.getpwuid(os.geteuid()).pw_name, False)
        return
    name = f"payt{uuid.uuid4().hex[:8]}"
    try:
        yield ServiceUser(name, True)
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)
        subprocess.run(["groupdel", name], capture_output=True, check=False)


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="release-install-collections-"))
    (directory / "ansible_collections" / "payments").mkdir(parents=True)
    (directory / "ansible_collections" / "payments" / "deploy").symlink_to(REPO)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


PLAY = """- name: Install a release
  hosts: all
  gather_facts: false
  tasks:
    - name: Fetch, verify and unpack
      ansible.builtin.include_role:
        name: payments.deploy.release
        tasks_from: install

    - name: Point a colour at it (no supervisor involved)
      ansible.builtin.include_role:
        name: payments.deploy.release
        tasks_from: configure
      when: configure | default(false)

    # configure notified the restart handlers: no supervisor here, so the play ends before they run
    - name: End before the service manager is asked anything
      ansible.builtin.meta: end_play
"""


def run_install(collections: Path, tmp_path: Path, hosts: dict[str, dict[str, t.Any]],
                **common: t.Any) -> subprocess.CompletedProcess:
    """ansible-playbook running the release role's install (and, for hosts with configure=true, configure) tasks
    on local "hosts", in parallel: each host's variables name its root and release."""
    playbook, inventory = tmp_path / "install.yml", tmp_path / "hosts.json"
    tmp_path.mkdir(parents=True, exist_ok=True)
    playbook.write_text(PLAY)
    common = {"ansible_connection": "local", "ansible_python_interpreter": HOST_PYTHON,
              "release_name": build_release.NAME, "payments_colour_ports": {"blue": 1, "green": 2},
              "payments_env": {"GREETING": 'a "quoted" value'}, "release_colour": "blue",
              "release_service_manager": "supervisor", "release_supervisor_config": "/nonexistent", **common}
    inventory.write_text(json.dumps({"all": {"hosts": hosts, "vars": common}}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_PIPELINING": "1"}
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                           str(playbook)], cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)


def recap(output: str) -> dict[str, dict[str, int]]:
    """Each host's PLAY RECAP counts."""
    return {host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
            for host, counts in re.findall(r"^(\S+)\s+: (ok=.*)$", output, re.MULTILINE)}


def failure(output: str, host: str) -> str:
    """The failure message of one host, white space folded (the YAML callback wraps long lines)."""
    found = re.search(rf"^fatal: \[{re.escape(host)}\]: FAILED! =>(.*?)(?=^\S)", output, re.MULTILINE | re.DOTALL)
    return " ".join(found.group(1).split()) if found else ""

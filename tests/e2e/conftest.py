"""Fixtures for the end-to-end tests: the running lab and a way to run the collection's playbooks on it."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner
import pytest

from helpers import other_release, passed_staging, rollback_ready, versions_or_nothing

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lab"))


@dataclass
class PlaybookRun:
    """One playbook run through ansible-runner: its exit status, its output, and the per-host counters and events
    ansible-runner recorded (structured: nothing here is parsed from the output text)."""
    rc: int
    output: str
    stats: dict = field(default_factory=dict)
    events: list = field(default_factory=list)

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """The PLAY RECAP counters by host (ok, changed, unreachable, failed, skipped, rescued, ignored), from
        ansible-runner's stats: every host the run processed, its counters zero where the stats have none."""
        names = {"ok": "ok", "changed": "changed", "dark": "unreachable", "failures": "failed", "skipped": "skipped",
                 "rescued": "rescued", "ignored": "ignored"}
        hosts = set(self.stats.get("processed") or {})
        for counters in self.stats.values():
            hosts.update(counters or {})
        return {host: {name: int((self.stats.get(key) or {}).get(host, 0)) for key, name in names.items()}
                for host in sorted(hosts)}

    @property
    def text(self) -> str:
        """The output with every run of whitespace made one space: the callback folds long messages over lines."""
        return " ".join(self.output.split())

    @property
    def changed(self) -> int:
        return sum(host["changed"] for host in self.recap.values())

    def results(self, task: str, outcome: str = "runner_on_ok") -> list[dict]:
        """The results of every run of the task with this name (on any host) that ended with this event."""
        return [event["event_data"].get("res", {}) for event in self.events
                if event.get("event") == outcome and event.get("event_data", {}).get("task") == task]


def playbook_command(name: str, *args: str, inventory: Path | None = None,
                     env: dict | None = None) -> tuple[list[str], dict[str, str]]:
    """The ansible-playbook command line and environment that run one of the collection's playbooks on the lab."""
    path = Path(name) if Path(name).is_absolute() else REPO / "playbooks" / name
    cmd = [str(REPO / ".venv" / "bin" / "ansible-playbook"), str(path), *args]
    if inventory:
        cmd += ["-i", str(inventory)]
    # ansible-runner runs the ansible-playbook it finds on PATH: the venv's, as the command line names.
    full_env = {**os.environ, "PATH": f"{cmd[0].rsplit('/', 1)[0]}:{os.environ.get('PATH', '')}",
                "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                **(env or {})}
    return cmd, full_env


def run_playbook(name: str, *args: str, inventory: Path | None = None, env: dict | None = None) -> PlaybookRun:
    """Run a playbook with ansible-runner (the same ansible-playbook, inventory and configuration as a user's run) and
    keep its events and stats."""
    cmd, full_env = playbook_command(name, *args, inventory=inventory, env=env)
    with tempfile.TemporaryDirectory(prefix="runner-") as private:
        config = ansible_runner.RunnerConfig(private_data_dir=private, playbook=cmd[1], cmdline=shlex.join(cmd[2:]),
                                             envvars=full_env, quiet=True)
        config.prepare()
        # A plain child process, not a pseudo-terminal: the tests run playbooks while load generator threads run, and
        # forking a pseudo-terminal from a threaded process may deadlock the child.
        config.runner_mode = "subprocess"
        config.subprocess_timeout = 900
        run = ansible_runner.Runner(config=config)
        run.run()
        output = run.stdout.read() + run.stderr.read()
        events = list(run.events)
        stats = run.stats or {}
    print(output[-4000:])  # shown by pytest when a test fails
    return PlaybookRun(run.rc, output, stats, events)


def start_playbook(name: str, *args: str, log: Path) -> subprocess.Popen:
    """Start a playbook in the background, in its own process group (so that a test can kill the whole run)."""
    cmd, full_env = playbook_command(name, *args)
    with log.open("w") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, text=True)


@pytest.fixture(scope="session")
def lab() -> dict:
    """The lab's endpoints; starts the lab when it is not running."""
    labctl = [str(REPO / "lab" / "labctl")]
    if subprocess.run([*labctl, "status"], capture_output=True, check=False).returncode != 0:
        subprocess.run([*labctl, "up"], check=True, capture_output=True)
    info = json.loads(subprocess.run([*labctl, "status", "--json"], capture_output=True, text=True,
                                     check=True).stdout)
    info["secrets"] = json.loads(Path(info["secrets_file"]).read_text())
    # A second lab (labctl up --port-offset) has its own inventory: the playbooks must be run with it.
    if Path(info["inventory"]) != REPO / "inventories" / "lab" / "hosts.yml":
        assert os.environ.get("ANSIBLE_INVENTORY") == info["inventory"], \
            f"the lab in {info['state_dir']} needs ANSIBLE_INVENTORY={info['inventory']}"
    return info


@pytest.fixture(scope="session")
def playbook():
    return run_playbook


@pytest.fixture(scope="session", autouse=True)
def staged_releases(lab) -> None:
    """Production deploys only what passed staging: take the lab's releases through staging once, unless its
    journal already holds a recent passing deploy of the very same artifacts."""
    for version in ("1.0.0", "1.1.0"):
        if not passed_staging(lab, version):
            run = run_playbook("deploy.yml", "-e", f"release_version={version}", "-e", "deploy_environment=staging")
            assert run.rc == 0, f"staging deploy of {version} failed"
            assert passed_staging(lab, version)


@pytest.fixture
def deployed(lab, playbook) -> str:
    """A production deploy on record that replaced an earlier release; the release that is live."""
    for attempt in range(2):  # a first deploy has nothing live before it: then one more
        if not rollback_ready(lab):
            live = versions_or_nothing(lab["production_url"])
            version = other_release(live.pop() if len(live) == 1 else "1.1.0")
            assert playbook("deploy.yml", "-e", f"release_version={version}").rc == 0
    release = rollback_ready(lab)
    assert release
    return release


def lab_log_excerpt(state_dir: Path, lines: int = 40) -> str:
    """The load balancer's server state changes and the app hosts' warnings: what a failed run needs to be explained."""
    parts = []
    haproxy = state_dir / "var" / "log" / "supervisor" / "haproxy.log"
    if haproxy.exists():
        changes = [line for line in haproxy.read_text(errors="replace").splitlines()
                   if line.startswith("[WARNING]") and " is " in line]
        parts.append("haproxy server state changes:\n" + "\n".join(changes[-lines:]))
    for log in sorted(state_dir.glob("hosts/*/var/log/payments/*.log")):
        noteworthy = [line for line in log.read_text(errors="replace").splitlines()
                      if "WARNING" in line or "ERROR" in line or "Traceback" in line or "Worker" in line]
        if noteworthy:
            parts.append(f"{log.relative_to(state_dir)}:\n" + "\n".join(noteworthy[-lines // 4:]))
    return "\n\n".join(parts)


# `make test` runs the core end-to-end tests; the ones marked `extended` repeat a path a core test already takes
# through another door (another playbook, another input) and run with PAYMENTS_E2E_ALL=1 (`make e2e-full`).
ALL_E2E = os.environ.get("PAYMENTS_E2E_ALL") == "1"


# Files that run first, in this order, because each leaves production as the next one needs it (the other files keep
# pytest's order after them). Every fixture still brings production to its state from wherever it is; the order only
# saves deploys: the lock test's real deploy is the lab's first one, the bad inputs run against it, the check-mode
# test's deploy over it is what the runbooks roll back and deploy again, which leaves the 1.1.0 the bake starts from,
# and the bake leaves the 1.0.0 the blue-green test needs.
RUN_FIRST = ("test_deploy_lock.py", "test_bad_input.py", "test_check_mode.py", "test_runbooks.py", "test_bake.py",
             "test_blue_green.py")


def pytest_collection_modifyitems(config, items) -> None:  # pylint: disable=unused-argument
    rank = {name: index for index, name in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(RUN_FIRST)))  # stable: the rest keep their order
    if ALL_E2E:
        return
    skip = pytest.mark.skip(reason="extended end-to-end test: PAYMENTS_E2E_ALL=1 or `make e2e-full` runs it")
    for item in items:
        if item.get_closest_marker("extended"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        state_dir = Path(os.environ.get("PAYMENTS_LAB_DIR", REPO / ".lab"))
        excerpt = lab_log_excerpt(state_dir)
        if excerpt:
            report.sections.append(("lab logs", excerpt))

"""Fault injection for the end-to-end fault suite: when to strike a running deploy, what to break, how to heal it,
and the checks every fault must pass (one coherent release that the journal names, no accepted payment lost)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import pytest

from conftest import PlaybookRun, run_playbook
from customer_traffic import CustomerTraffic
from helpers import history, journal_dir, lab_program, lock_file, map_colour, query, stripe_intents

REPO = Path(__file__).resolve().parents[2]
# The phases deploy.yml records in its lock, in order (docs/deploy-lock.md); within "switch", "intent" (the journal's
# switch-intent.json written) and "flip" (the map file changed) come before the lock records "bake". Then the phases
# rollback.yml records in its lock.
PHASES = ("preflight", "Stripe webhooks", "install", "backup", "migrate", "release", "smoke test of the idle colour",
          "switch", "intent", "flip", "bake", "alert check")
ROLLBACK_PHASES = ("switch back", "revert migrations", "mirror the deploy")
WITHIN_SWITCH = ("intent", "flip")  # marked by the journal and the map file, not by the lock
# PAYMENTS_E2E_FAULTS=1 runs the core matrix (`make e2e`, on a lab of its own), =all the full one (`make e2e-faults`);
# a plain `pytest tests/e2e` runs neither.
MATRIX = os.environ.get("PAYMENTS_E2E_FAULTS", "")
FAULT_SUITE_ONLY = pytest.mark.skipif(MATRIX not in ("1", "all"), reason="the fault suite runs on a lab of its own in "
                                      "`make e2e` (alone: `make e2e-faults`)")


def phase_rank(phase: str) -> int:
    return (PHASES + ROLLBACK_PHASES).index(phase)


def lock(lab: dict) -> dict | None:
    """The production deploy lock, or None (no lock, or caught between its write and rename)."""
    try:
        return json.loads(lock_file(lab).read_text())
    except (OSError, ValueError):
        return None


def intent(lab: dict) -> dict | None:
    path = journal_dir(lab) / "switch-intent.json"
    return json.loads(path.read_text()) if path.exists() else None


def wait_until(condition: Callable[[], bool], run: subprocess.Popen, what: str, timeout: float = 400) -> None:
    """Poll every 20 ms until condition() holds; fail when the run ends first (it never reached the fault)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if run.poll() is not None:
            raise AssertionError(f"the deploy ended (rc {run.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"the deploy did not reach {what} within {timeout} s")


def wait_for_phase(lab: dict, run: subprocess.Popen, phase: str) -> None:
    wait_until(lambda: (lock(lab) or {}).get("phase") == phase, run, f"phase {phase!r}")


def supervisorctl(conf: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / ".venv" / "bin" / "supervisorctl"), "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def app_supervisor(lab: dict, host: str) -> Path:
    return Path(lab["state_dir"]) / "hosts" / host / "etc" / "supervisor" / "supervisord.conf"


def descendants(pid: int) -> list[int]:
    """The process and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def kill_tree(pid: int) -> None:
    """kill -9 of a process and everything it started. Not its process group: each of Ansible's workers starts a
    session of its own (setsid), so a killpg of ansible-playbook leaves the workers running their task. The tree is
    frozen first, until no new process appears, so that nothing forks away while it is killed."""
    frozen: set[int] = set()
    while True:
        tree = set(descendants(pid))
        for member in tree - frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGSTOP)
        if tree <= frozen:
            break
        frozen |= tree
    for member in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def unlock(reason: str = "deploy killed by the fault suite") -> None:
    """The documented recovery after a dead run: its lock released by force, with a reason."""
    assert run_playbook("unlock.yml", "-e", "deploy_environment=production", "-e", json.dumps({"reason": reason})).rc == 0


@dataclass
class Fault:
    """One fault: struck when the deploy's lock records `phase` (or, for "flip", when the map file changes)."""

    name: str
    phase: str
    what: str  # what the fault shows, for the table and docs/fault-suite.md
    delay: float = 0.0  # seconds after the trigger: into the phase rather than at its first task
    kills_run: bool = False
    extra_args: tuple[str, ...] = ()  # for the faulted run's ansible-playbook (e.g. the bake turned on)
    # Struck when the journal's last switch becomes a rollback (rollback.yml journals its flip back, then the lock
    # records "revert migrations" a second or so before the revert connects): for an outage that must be in place
    # before the phase's first connection.
    at_rollback_record: bool = False
    # Where the fault leaves production: "previous" (FROM: nothing moved, or traffic flipped back), "awaiting-decision"
    # (the bake was Inconclusive: TO serves, the previous colour stays warm, a person decides) or "deployed" (TO
    # serves, journalled as a deploy: the fault did not touch the verdict) or "new release" (either of the last two).
    leaves: str = "previous"
    # A fault whose path to its end state a core fault of the same phase (or another end-to-end test) already takes:
    # only the full matrix runs it (PAYMENTS_E2E_FAULTS=all, `make e2e-faults`), not `make test`.
    extended: bool = False

    @staticmethod
    def in_matrix(faults: list["Fault"]) -> list["Fault"]:
        """The faults the chosen matrix runs: all of them in the full one, those not `extended` in the core one."""
        return [fault for fault in faults if MATRIX == "all" or not fault.extended]

    @property
    def lock_phase(self) -> str:
        """The last phase the lock records before the fault strikes."""
        return "switch" if self.phase in WITHIN_SWITCH else self.phase

    @property
    def after_flip(self) -> bool:
        """Struck once the deploy's traffic is on the new release (not verified, or not yet judged)."""
        return self.phase in ("flip", "bake")

    def trigger(self, lab: dict, run: subprocess.Popen, live_colour: str) -> None:
        if self.at_rollback_record:
            wait_until(lambda: journal_live(lab)["kind"] == "rollback", run, "its rollback record")
            return
        wait_for_phase(lab, run, self.lock_phase)
        if self.phase == "flip":
            wait_until(lambda: map_colour(lab["haproxy_map_file"]) != live_colour, run, "its flip")
        elif self.phase == "intent":
            wait_until(lambda: intent(lab) is not None, run, "its switch intent")
        time.sleep(self.delay)

    def inject(self, lab: dict, run: subprocess.Popen) -> None:
        raise NotImplementedError

    def heal(self, lab: dict) -> None:
        raise NotImplementedError


@dataclass
class Outage(Fault):
    """A lab server stopped (supervisorctl stop: refused connections), started again to heal."""

    program: str = ""

    def inject(self, lab: dict, run: subprocess.Popen) -> None:
        lab_program(lab, "stop", self.program)

    def heal(self, lab: dict) -> None:
        lab_program(lab, "start", self.program)
        if self.program == "s3":
            # The lab's S3 (moto) keeps everything in memory: a restarted one is empty, so the bucket is made again
            # as `labctl up` makes it. Real S3 would come back with its objects.
            from labctl import create_bucket  # pylint: disable=import-outside-toplevel

            create_bucket({"ports": {"s3": urlsplit(lab["s3_endpoint"]).port}})


@dataclass
class HiddenAdminSocket(Fault):
    """HAProxy's admin socket unreachable (its path renamed away: connect() fails) while HAProxy keeps serving."""

    def inject(self, lab: dict, run: subprocess.Popen) -> None:
        os.rename(lab["haproxy_admin_socket"], lab["haproxy_admin_socket"] + ".away")

    def heal(self, lab: dict) -> None:
        os.rename(lab["haproxy_admin_socket"] + ".away", lab["haproxy_admin_socket"])


@dataclass
class KilledRun(Fault):
    """kill -9 of ansible-playbook and every worker and module it started (its process tree); healed as
    docs/deploy-lock.md says: unlock.yml once the run is known dead."""

    kills_run: bool = True

    def inject(self, lab: dict, run: subprocess.Popen) -> None:
        kill_tree(run.pid)
        run.wait(timeout=30)

    def heal(self, lab: dict) -> None:
        unlock()
        if self.after_flip:
            # Traffic is on a release nobody verified or judged, and the intent of the switch is on record: the
            # runbook's next step is rollback.yml, which resolves it (docs/runbooks/rollback.md).
            self.rollback = run_playbook("rollback.yml")

    rollback: PlaybookRun | None = None  # the rollback that healed a kill after the flip


@dataclass
class ColourDies(Fault):
    """The new colour crashes once it has traffic: its gunicorn process groups SIGKILLed on every app host, again
    whenever the supervisor restarts them, until the run ends; healed by starting the programs again."""

    hosts: tuple[str, ...] = ("app1", "app2")
    colour: str = ""
    killed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _pids(self, lab: dict) -> list[int]:
        pids = []
        for host in self.hosts:
            out = supervisorctl(app_supervisor(lab, host), "pid", f"payment-service-{self.colour}").stdout.strip()
            if out.isdigit() and int(out) > 0:
                pids.append(int(out))
        return pids

    def _crash_loop(self, lab: dict, run: subprocess.Popen) -> None:
        while not self._stop.is_set() and run.poll() is None:
            for pid in self._pids(lab):
                try:
                    os.killpg(pid, signal.SIGKILL)
                    self.killed += 1
                except ProcessLookupError:
                    pass
            self._stop.wait(0.3)

    def inject(self, lab: dict, run: subprocess.Popen) -> None:
        self.colour = map_colour(lab["haproxy_map_file"])
        self._thread = threading.Thread(target=self._crash_loop, args=(lab, run), daemon=True)
        self._thread.start()

    def heal(self, lab: dict) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)
        for host in self.hosts:
            conf = app_supervisor(lab, host)
            program = f"payment-service-{self.colour}"
            deadline = time.monotonic() + 60
            while "RUNNING" not in supervisorctl(conf, "status", program).stdout and time.monotonic() < deadline:
                supervisorctl(conf, "start", program)  # FATAL after too many quick deaths: started by hand
                time.sleep(1)


# --- the checks -------------------------------------------------------------------------------------------------

def wait_for_frontend(url: str, timeout: float = 60) -> None:
    """Until the frontend answers /version (servers come back UP after a PostgreSQL outage within seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/version", timeout=3) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer /version within {timeout} s")


def burst(url: str, requests: int = 60, concurrency: int = 6) -> set[str]:
    """The releases that answer a burst of concurrent /version requests through the frontend (each must answer)."""
    def one(_n: int) -> str:
        with urllib.request.urlopen(f"{url}/version", timeout=10) as answer:
            return json.load(answer)["version"]

    with ThreadPoolExecutor(concurrency) as pool:
        return set(pool.map(one, range(requests)))


def journal_live(lab: dict) -> dict:
    """What the journal says serves: the last switch (deploy or rollback) recorded in history.jsonl."""
    switches = [r for r in history(lab) if r.get("kind") in ("deploy", "rollback")]
    assert switches, "the journal records no switch"
    return switches[-1]


def journal_state(lab: dict) -> str:
    last, pending = journal_live(lab), intent(lab)
    text = f"last {last['kind']}{'/' + last['state'] if last.get('state') else ''} -> {last['release_to']}"
    if pending:
        text += f"; intent {pending['release_from']}->{pending['release_to']} unsettled"
    held = lock(lab)
    return text + (f"; lock held ({held.get('phase')})" if held else "; lock free")


def assert_one_coherent_release(lab: dict) -> str:
    """Every answer of a burst through the frontend names one release, the one the journal says serves, on the
    colour the map file names; an unsettled intent must not have moved traffic. Returns the release."""
    wait_for_frontend(lab["production_url"])
    served = burst(lab["production_url"])
    assert len(served) == 1, f"production serves more than one release: {served}"
    release = served.pop()
    last = journal_live(lab)
    assert last["release_to"] == release, f"serving {release}, the journal says {last['release_to']}: {last}"
    assert map_colour(lab["haproxy_map_file"]) == last["colour_to"], "the map file and the journal disagree"
    pending = intent(lab)
    if pending:
        assert pending["release_from"] == release, f"traffic moved to an unverified release: {pending}"
    return release


def fault_customers(lab: dict) -> CustomerTraffic:
    """Payments and some refunds through the production frontend, bounded, with a live-mode card (production uses
    the live key); slow enough not to push the smoke tests' p95 over their limit on a 2-core lab."""
    return CustomerTraffic(lab["production_url"], lab["secrets"]["api_key"], rate=1.5, duration=300,
                           max_payments=450, refund_fraction=0.1, concurrency=2, seed=7,
                           payment_method="pm_lab_live_visa")


def wait_for_a_payment(traffic: CustomerTraffic, timeout: float = 45) -> None:
    """Keep the customers going after the heal until one more payment has succeeded (the instances notice a
    dependency back within seconds), so that every fault's traffic has payments to check."""
    def succeeded() -> int:
        return sum(1 for attempt in list(traffic.attempts) if attempt.kind == "payment" and attempt.ok)

    before, deadline = succeeded(), time.monotonic() + timeout
    while succeeded() == before and time.monotonic() < deadline:
        time.sleep(0.5)


def lost_payments(lab: dict, summary: dict) -> list[str]:
    """The payments the customers saw succeed that are missing from the service's database or not succeeded at
    Stripe."""
    succeeded = summary["payments"]["succeeded_ids"]
    if not succeeded:
        return []
    rows = query(lab, "SELECT id, stripe_payment_intent_id FROM payments WHERE id = ANY(ARRAY[%s])"
                 % ",".join(f"'{payment_id}'" for payment_id in succeeded))
    lost = sorted(set(succeeded) - {row[0] for row in rows})
    for payment_id, intent_id in rows:
        if stripe_status(lab, intent_id) != "succeeded":
            lost.append(payment_id)
    return lost


def stripe_status(lab: dict, intent_id: str) -> str:
    """A PaymentIntent's status at Stripe (the lab's emulator, live mode); "missing" when Stripe does not know it."""
    import stripe  # pylint: disable=import-outside-toplevel

    try:
        return stripe_intents(lab, [intent_id])[0].status
    except stripe.InvalidRequestError:
        return "missing"


def failed_phase(output: str) -> str:
    """The phase deploy.yml's abort names ("Failed during PHASE: ..."), else ''."""
    found = re.findall(r"Failed during (.+?):", " ".join(output.split()))
    return found[-1] if found else ""


def failed_play(output: str) -> str:
    """The play the PHASE TIMINGS summary marks FAILED, else ''."""
    found = re.findall(r"^(\S.*?)\s+[\d.]+ s\s+FAILED$", output, re.M)
    return found[-1] if found else ""

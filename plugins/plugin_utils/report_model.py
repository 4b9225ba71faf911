# Copyright: Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run report records while a playbook runs: phases (plays), task results, the run's name, its journal record
and the production gate's sign-offs; and the report built from them at the end. Only structured data goes in, each value redacted."""

from __future__ import annotations

import datetime
import re
import time

from ansible_collections.payments.deploy.plugins.plugin_utils.report_chart import SAMPLE_ACTIONS
from ansible_collections.payments.deploy.plugins.plugin_utils.report_checklist import judge
from ansible_collections.payments.deploy.plugins.plugin_utils.report_fields import select
from ansible_collections.payments.deploy.plugins.plugin_utils.report_redact import redact, redact_text

FAILED = ("failed", "unreachable")
MESSAGE_LIMIT = 500
MAX_ITEMS = 100
# The deploy_journal role's task that writes the record its "Stamp the record" task set as deploy_journal_entry.
JOURNAL_TASK = "Record the last switch of its kind"


def utc_iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_name(run_id: str | None, playbook: str, started: float) -> str:
    """A file name for the run: its deploy_run_id, else its UTC start time and playbook name."""
    if not run_id:
        stamp = datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        run_id = f"{stamp}-{playbook}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._") or "run"


class RunRecord:
    """The run as it happens. ``wanted`` is the checklist map's wanted fields (report_checklist.wanted_fields)."""

    def __init__(self, playbook: str, wanted: dict[str, dict[str, set[str]]]) -> None:
        self.playbook = playbook
        self.check_mode = False
        self.wanted = wanted
        self.started = time.time()
        self.phases: list[dict] = []
        self.planned_phases: list[str] = []
        self.results: list[dict] = []
        self.task_started: dict[str, float] = {}
        self.run_id: str | None = None
        self.environment: str | None = None
        self.journal: dict = {}
        self.gate_record: dict = {}
        self.samples: list[dict] = []
        self.switches: list[dict] = []

    def start_phase(self, name: str) -> None:
        self.end_phase()
        self.phases.append({"phase": name, "start": time.time(), "end": None, "seconds": None, "tasks": 0})

    def end_phase(self) -> None:
        if self.phases and self.phases[-1]["end"] is None:
            phase = self.phases[-1]
            phase["end"] = time.time()
            phase["seconds"] = round(phase["end"] - phase["start"], 3)

    def start_task(self, uuid: str) -> None:
        self.task_started[uuid] = time.time()

    def add_result(self, host: str, task_name: str, uuid: str, action: str, status: str, result: dict,
                   no_log: bool, ignored: bool = False) -> None:
        """One task result of one host. A no_log result keeps its status only."""
        ended = time.time()
        started = self.task_started.get(uuid, ended)
        entry = {"host": host, "task": task_name, "action": action, "status": status, "ignored": ignored,
                 "phase": self.phases[-1]["phase"] if self.phases else None,
                 "start": round(started, 3), "seconds": round(ended - started, 3)}
        if no_log:
            entry["no_log"] = True
        else:
            wanted = self.wanted["module"].get(action, set()) | self.wanted["task"].get(task_name, set())
            if action.startswith("payments.deploy."):
                wanted |= self.wanted["module"].get(action[len("payments.deploy."):], set())
            entry["fields"] = redact(select(result, action, wanted))
            if isinstance(result.get("results"), list):  # a loop: each item's own fields
                entry["items"] = [redact(select(item, action, wanted)) if not item.get("_ansible_no_log") else {"no_log": True}
                                  for item in result["results"][:MAX_ITEMS] if isinstance(item, dict)]
            if status in FAILED or result.get("msg") and status != "skipped":
                entry["msg"] = redact_text(str(result.get("msg", "")))[:MESSAGE_LIMIT]
            self.note_facts(host, result.get("ansible_facts") or {})
            if task_name == JOURNAL_TASK and self.journal and status in ("ok", "changed"):
                self.journal.update(written=True, file=result.get("dest"))
            if action in SAMPLE_ACTIONS and status in ("ok", "changed", "failed"):
                self.samples.append({"action": action, "host": host, "start": started, "end": ended, "result": result})
            if action == "payments.deploy.haproxy_switch" and result.get("switched_at"):
                self.switches.append({"host": host, "at": result["switched_at"], "colour": result.get("colour")})
        if self.phases:
            self.phases[-1]["tasks"] += 1
        self.results.append(entry)

    def note_facts(self, host: str, facts: dict) -> None:
        """The run's name, environment, journal record and the production gate's record (sign-offs, attestations,
        waivers), from the facts tasks set."""
        if facts.get("deploy_run_id"):
            self.run_id = str(facts["deploy_run_id"])
        plan = facts.get("preflight_plan")
        if isinstance(plan, dict) and plan.get("environment"):
            self.environment = str(plan["environment"])
        if isinstance(facts.get("deploy_journal_entry"), dict):
            self.journal = {"host": host, "record": redact(facts["deploy_journal_entry"]), "written": False}
        if isinstance(facts.get("production_gate_record"), dict):
            self.gate_record = redact(facts["production_gate_record"])

    def mark_rescued(self, summary: dict[str, dict]) -> None:
        """Mark the failures a rescue section handled. Ansible counts them per host (``rescued``) but a result does not
        say it; a failure that was not rescued ends the host's run, so a host's last ``failures`` failed results are
        the unrescued ones and any earlier failed result was rescued."""
        for host, counts in summary.items():
            failed = [result for result in self.results
                      if result["host"] == host and result["status"] == "failed" and not result["ignored"]]
            unrescued = counts.get("failures", 0)
            for result in failed[:max(0, len(failed) - unrescued)]:
                result["rescued"] = True

    def outcome(self, summary: dict[str, dict]) -> dict:
        """The run's outcome from Ansible's per-host summary, and where a failed run stopped."""
        failed = sorted(host for host, counts in summary.items() if counts.get("failures") or counts.get("unreachable"))
        failures = [result for result in self.results if result["status"] in FAILED and not result["ignored"]]
        stops = [result for result in failures if not result.get("rescued")]
        outcome = {"status": "failed" if failed else "succeeded", "failed_hosts": failed, "hosts": summary}
        if failures:
            outcome["first_failure"] = {key: failures[0].get(key) for key in ("phase", "task", "host", "msg")}
        if stops and failed:
            outcome["stopped_at"] = {key: stops[-1].get(key) for key in ("phase", "task", "host", "msg")}
        return outcome

    def phase_outcome(self, name: str) -> str:
        """failed (a failure nothing rescued), rescued (failures, all rescued) or ok."""
        failures = [result for result in self.results
                    if result["phase"] == name and result["status"] in FAILED and not result["ignored"]]
        if any(not result.get("rescued") for result in failures):
            return "failed"
        return "rescued" if failures else "ok"

    def build(self, summary: dict[str, dict], lines: list[dict], map_problem: str | None, chart: dict) -> dict:
        """The whole report as JSON-ready data."""
        self.end_phase()
        self.mark_rescued(summary)
        ended = time.time()
        started_names = [phase["phase"] for phase in self.phases]
        phases = [{"phase": p["phase"], "start": utc_iso(p["start"]), "end": utc_iso(p["end"]), "seconds": p["seconds"],
                   "outcome": self.phase_outcome(p["phase"]), "tasks": p["tasks"]} for p in self.phases]
        phases += [{"phase": name, "start": None, "end": None, "seconds": None, "outcome": "not run", "tasks": 0}
                   for name in self.planned_phases[len(started_names):]]
        checklist = judge(lines, self.results, self.gate_record)
        checklist["problem"] = map_problem
        return {
            "format": 1,
            "run": run_name(self.run_id, self.playbook, self.started),
            "run_id": self.run_id,
            "playbook": self.playbook,
            # A --check run: what the report shows would have been done; nothing was changed.
            "check_mode": self.check_mode,
            "environment": self.environment,
            "started": utc_iso(self.started),
            "ended": utc_iso(ended),
            "seconds": round(ended - self.started, 3),
            "outcome": self.outcome(summary),
            "phases": phases,
            "checklist": checklist,
            "journal": self.journal or None,
            "production_gate": self.gate_record or None,
            "chart": chart,
            "results": [{key: value for key, value in result.items() if key != "start"} for result in self.results],
        }

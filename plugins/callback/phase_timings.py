# Copyright: Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback plugin that reports how long each phase (play) of a deploy took."""

from __future__ import annotations

DOCUMENTATION = r"""
name: phase_timings
type: aggregate
short_description: Report how long each phase of a deploy took
version_added: 0.1.0
author: Payments Platform Team (@payments-platform)
description:
  - At the end of a run, prints one line per play (a deploy's phases are plays) with its duration and outcome,
    and the total.
  - Optionally writes the same figures as JSON to a file, for reports and dashboards.
requirements:
  - enable it in C(callbacks_enabled)
options:
  output_file:
    description: Also write the timings as JSON to this file.
    type: path
    env:
      - name: PAYMENTS_PHASE_TIMINGS_FILE
    ini:
      - section: callback_phase_timings
        key: output_file
"""

import json
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    """Times every play and prints the table when the playbook ends."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "payments.deploy.phase_timings"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._phases = []
        self._started = time.monotonic()
        self._failed = False

    def _close_phase(self):
        if self._phases and self._phases[-1]["seconds"] is None:
            phase = self._phases[-1]
            phase["seconds"] = round(time.monotonic() - phase["start"], 2)

    def v2_playbook_on_play_start(self, play):
        self._close_phase()
        self._phases.append({"phase": play.get_name().strip(), "start": time.monotonic(), "seconds": None,
                             "failed": False})

    def _mark_failed(self):
        if self._phases:
            self._phases[-1]["failed"] = True

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not ignore_errors:
            self._mark_failed()

    def v2_runner_on_unreachable(self, result):
        self._mark_failed()

    def v2_playbook_on_stats(self, stats):
        self._close_phase()
        total = round(time.monotonic() - self._started, 2)
        phases = [{"phase": p["phase"], "seconds": p["seconds"], "failed": p["failed"]} for p in self._phases]
        width = max([len(p["phase"]) for p in phases] + [5])
        self._display.banner("PHASE TIMINGS")
        for phase in phases:
            outcome = "FAILED" if phase["failed"] else "ok"
            self._display.display(f"{phase['phase']:<{width}}  {phase['seconds']:>8.2f} s  {outcome}")
        self._display.display(f"{'total':<{width}}  {total:>8.2f} s")
        output_file = self.get_option("output_file")
        if output_file:
            with open(output_file, "w", encoding="utf-8") as handle:
                json.dump({"phases": phases, "total_seconds": total}, handle, indent=2)

# Copyright: Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback plugin that writes a per-run evidence report (JSON, Markdown, HTML with a chart) next to the journal."""

from __future__ import annotations

DOCUMENTATION = r"""
name: run_report
type: aggregate
short_description: Write a per-run evidence report (JSON, Markdown and HTML) next to the deploy journal
version_added: 0.1.0
author: Payments Platform Team (@payments-platform)
description:
  - Records every play (a deploy's phases are plays) with its start, end, duration and outcome, and every task result
    with its host, task name, resolved action, status and duration. For the collection's own modules it keeps a
    selection of their result fields (backup id and checksum, migration heads, switch time, probe and smoke-test
    latency, bake analysis, certificate expiry...).
  - Nothing is kept from a result whose task is C(no_log) (only its status), and never a module's C(invocation).
    Every kept value is redacted again, Stripe keys (C(sk_), C(rk_), C(whsec_)), PEM blocks, passwords in URLs and the
    values of keys named like secret, password, key or token become C(<redacted>).
  - At the end of the run, also a failed one, writes C(<run>.json), C(<run>.md) and C(<run>.html) (mode 0640, each
    written atomically) to O(dir). C(<run>) is the run's C(deploy_run_id) fact when a play set one, else its UTC start
    time and the playbook's name.
  - The report lists every line of the production checklist map with its status in this run (a verified line is
    verified only when every evidence result of the line succeeded in this run, with the evidence values; a gate line
    with the attestation, waiver or sign-off the C(production_gate_record) fact holds), the phase timings, the run's
    outcome and where a failed run stopped, the journal record the run wrote, and a chart of requests per second,
    error rate and p95 latency over the run (from Prometheus when the inventory sets C(payments_prometheus_url), else
    from the run's own frontend samples, payment probes and smoke-test payments).
  - When the first load balancer's variables name C(run_report_s3_bucket), the three files are also copied to that
    bucket under C(run_report_s3_prefix) (default C(reports/)), with the backup store's endpoint, region, credentials and
    server-side encryption (C(backup_s3_*), C(backup_aws_*)) unless C(run_report_s3_endpoint_url),
    C(run_report_s3_region), C(run_report_aws_access_key_id), C(run_report_aws_secret_access_key) or
    C(run_report_s3_sse) say otherwise. A copy that fails is a warning; the local report stands.
requirements:
  - enable it in C(callbacks_enabled)
  - matplotlib on the controller for the chart (without it the report is written and says the chart is missing)
  - boto3 on the controller for the copy to S3
options:
  dir:
    description:
      - The directory the report files are written to, on the controller.
      - Default C(<deploy_journal_dir>/reports), C(deploy_journal_dir) read from the first load balancer's variables.
      - A run whose inventory sets no C(deploy_journal_dir) (a playbook that is not one of this collection's) writes no
        report unless this option is set.
    type: path
    env:
      - name: PAYMENTS_RUN_REPORT_DIR
    ini:
      - section: callback_run_report
        key: dir
  checklist_map:
    description:
      - The checklist map (C(lines) with their evidence). Default the collection's C(checklist/map.yml).
    type: path
    env:
      - name: PAYMENTS_RUN_REPORT_CHECKLIST_MAP
    ini:
      - section: callback_run_report
        key: checklist_map
  prometheus_url:
    description:
      - The Prometheus the chart is queried from. Default C(payments_prometheus_url) of the first load balancer.
      - The value V(none) draws the chart from the run's own requests even when the inventory names a Prometheus.
    type: str
    env:
      - name: PAYMENTS_RUN_REPORT_PROMETHEUS_URL
    ini:
      - section: callback_run_report
        key: prometheus_url
"""

import time
from pathlib import Path

from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible.template import Templar

from ansible_collections.payments.deploy.plugins.plugin_utils.report_chart import build_series, render_png
from ansible_collections.payments.deploy.plugins.plugin_utils.report_checklist import load_map, wanted_fields
from ansible_collections.payments.deploy.plugins.plugin_utils.report_files import write_report
from ansible_collections.payments.deploy.plugins.plugin_utils.report_model import RunRecord
from ansible_collections.payments.deploy.plugins.plugin_utils.report_s3 import copy_to_s3, s3_settings

# Read from the first load balancer's variables (the host that keeps the journal).
INVENTORY_VARS = ("deploy_journal_dir", "payments_prometheus_url", "deploy_environment", "run_report_s3_bucket",
                  "run_report_s3_prefix", "run_report_s3_endpoint_url", "run_report_s3_region", "run_report_s3_sse",
                  "run_report_aws_access_key_id", "run_report_aws_secret_access_key", "backup_s3_endpoint_url",
                  "backup_s3_region", "backup_s3_sse", "backup_aws_access_key_id", "backup_aws_secret_access_key")


def task_name(task) -> str:
    """The task's name as the output shows it, without its role's prefix (an include_role's get_name takes no
    include_role_fqcn)."""
    try:
        name = task.get_name(include_role_fqcn=False)
    except TypeError:
        name = task.get_name()
    return name.split(" : ")[-1]


def task_key(task) -> str:
    """What ties a task's results to its start: Ansible's id of the task."""
    return str(getattr(task, "_uuid", None) or id(task))


class CallbackModule(CallbackBase):
    """Records the run as structured data and writes the report when the playbook ends."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "payments.deploy.run_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.record = None
        self.lines = []
        self.map_problem = None
        self.inventory = {}

    def ensure_record(self, playbook_name="playbook"):
        if self.record is None:
            self.lines, self.map_problem = load_map(self.get_option("checklist_map"))
            self.record = RunRecord(playbook_name, wanted_fields(self.lines))
        return self.record

    def v2_playbook_on_start(self, playbook):
        record = self.ensure_record(Path(getattr(playbook, "_file_name", None) or "playbook").stem)
        record.check_mode = bool(context.CLIARGS.get("check"))
        record.planned_phases = [play.get_name().strip() for play in playbook.get_plays()]

    def read_inventory(self, play):
        """deploy_journal_dir and friends from the first load balancer (else the play's first host), templated."""
        if self.inventory.get("deploy_journal_dir"):
            return
        manager = play.get_variable_manager()
        inventory = getattr(manager, "_inventory", None)
        if inventory is None:
            return
        every = {"ignore_limits": True, "ignore_restrictions": True}
        hosts = inventory.get_hosts("loadbalancers", **every) or inventory.get_hosts(play.hosts, **every) or inventory.get_hosts("all", **every)
        if not hosts:
            return
        variables = manager.get_vars(play=play, host=hosts[0])
        templar = Templar(loader=play.get_loader(), variables=variables)
        for name in INVENTORY_VARS:
            if name in variables:
                try:
                    self.inventory[name] = templar.template(variables[name])
                except Exception as exc:  # pylint: disable=broad-exception-caught
                    self._display.warning(f"run_report: {name} of {hosts[0].name} not resolved: {exc}")

    def v2_playbook_on_play_start(self, play):
        record = self.ensure_record()
        record.start_phase(play.get_name().strip())
        self.read_inventory(play)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.ensure_record().start_task(task_key(task))

    def v2_playbook_on_handler_task_start(self, task):
        self.ensure_record().start_task(task_key(task))

    def add(self, result, status, ignored=False):
        task = result.task
        data = result.result
        no_log = bool(task.no_log or data.get("_ansible_no_log") or "censored" in data)
        self.ensure_record().add_result(result.host.get_name(), task_name(task),
                                        task_key(task), task.resolved_action or task.action, status, data, no_log, ignored)

    def v2_runner_on_ok(self, result):
        self.add(result, "changed" if result.is_changed() else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self.add(result, "failed", ignored=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self.add(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self.add(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        record = self.ensure_record()
        if not self.get_option("dir") and not self.inventory.get("deploy_journal_dir"):
            # checked first: no Prometheus query and no chart for a report that is not written
            self._display.vv("run_report: no report (neither the dir option nor deploy_journal_dir is set)")
            return
        try:
            summary = {host: stats.summarize(host) for host in sorted(stats.processed)}
            prometheus = self.get_option("prometheus_url") or self.inventory.get("payments_prometheus_url")
            record.environment = record.environment or self.inventory.get("deploy_environment")
            ended = time.time()
            chart = build_series(None if prometheus in (None, "", "none") else str(prometheus), record.environment,
                                 record.samples, record.started, ended)
            png, chart_note = render_png(chart, [switch["at"] - record.started for switch in record.switches], ended - record.started)
            report = record.build(summary, self.lines, self.map_problem, chart)
            directory = self.get_option("dir") or f"{self.inventory.get('deploy_journal_dir')}/reports"
            paths = write_report(str(directory), report, png, chart_note)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # The run is over: a report that cannot be written must not hide its outcome.
            self._display.warning(f"run_report: the run report was not written: {exc.__class__.__name__}: {exc}")
            return
        self._display.display(f"Run report: {paths[-1]} ({report['outcome']['status']})")
        settings = s3_settings(self.inventory)
        if settings:
            try:
                copies = copy_to_s3(paths, settings)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                # The local report is written; the copy is a convenience, and its error text holds no credential.
                self._display.warning(f"run_report: the report was not copied to s3://{settings['bucket']}/{settings['prefix']}: "
                                      f"{exc.__class__.__name__}: {exc}")
                return
            self._display.display(f"Run report copied to {copies[-1]}")

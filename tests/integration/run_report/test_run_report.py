"""The run_report callback in real ansible-playbook runs: the files it writes, what they say about the checklist,
the phases, the journal and the chart, and what they never say (secrets)."""

from __future__ import annotations

import base64
import collections
import datetime
import json
import re
import stat
import struct
import typing as t
from pathlib import Path

import yaml

from conftest import FIXTURES, VERSION, Run

PLAYS = [play["name"] for play in yaml.safe_load((FIXTURES / "deploy.yml").read_text())]


def lines_by_id(report: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    return {line["id"]: line for line in report["checklist"]["lines"]}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_three_files_named_after_the_run_mode_0640(succeeded_run: Run) -> None:
    assert succeeded_run.rc == 0, succeeded_run.output
    files = succeeded_run.files()
    for path in files.values():
        assert path.stem == succeeded_run.extra["run_report_run_id"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not [path for path in succeeded_run.report_dir.iterdir() if path.name.startswith(".")]  # no temp file left
    assert str(files["html"]) in succeeded_run.output


def test_phases_follow_the_plays_and_the_run_succeeded(succeeded_run: Run) -> None:
    report = succeeded_run.report()
    assert report["run_id"] == succeeded_run.extra["run_report_run_id"]
    assert report["outcome"]["status"] == "succeeded"
    assert "stopped_at" not in report["outcome"]
    # the first play's probe failed and its rescue handled it
    assert report["outcome"]["first_failure"]["task"] == "Probe the previous colour"
    assert [phase["phase"] for phase in report["phases"]] == PLAYS
    assert [phase["outcome"] for phase in report["phases"]] == ["rescued", "ok", "ok"]
    probe = [result for result in report["results"] if result["task"] == "Probe the previous colour"]
    assert probe[0]["status"] == "failed" and probe[0]["rescued"] is True
    assert sum(phase["tasks"] for phase in report["phases"]) == len(report["results"])
    assert report["environment"] == "production"


def test_verified_lines_carry_the_evidence_values(succeeded_run: Run, tls_endpoint: tuple[t.Any, t.Any]) -> None:
    report = succeeded_run.report()
    lines = lines_by_id(report)
    cert = tls_endpoint[1]

    tls = lines["tls-certificate"]
    assert tls["run_status"] == "verified"
    assert len(tls["evidence"][0]["values"]) == 2  # one per loop item
    for found in tls["evidence"][0]["values"]:
        values = found["fields"]
        assert values["not_after"].replace("Z", "+00:00")[:19] == cert.not_valid_after_utc.isoformat()[:19]
        assert values["days_remaining"] == (cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).days
        assert values["verified"] is True

    health = lines["health"]
    assert health["run_status"] == "verified"
    sampled = health["evidence"][0]["values"][0]["fields"]
    assert sampled["requests_sent"] == len(succeeded_run.statuses)
    assert sampled["versions"] == [VERSION["version"]]
    assert sorted(sampled["statuses"]) == sorted(set(succeeded_run.statuses))
    journal_file = Path(health["evidence"][1]["values"][0]["fields"]["dest"])
    assert journal_file.is_file() and journal_file.is_relative_to(succeeded_run.journal_dir)

    named = lines["run-named"]
    assert named["run_status"] == "verified"
    assert named["evidence"][0]["values"][0]["fields"]["ansible_facts.deploy_run_id"] == succeeded_run.extra["run_report_run_id"]
    assert named["evidence"][1]["values"][0]["fields"]["ansible_facts.run_report_database"]["password"] == "<redacted>"


def test_every_line_has_its_run_status_and_the_counts_add_up(succeeded_run: Run) -> None:
    report = succeeded_run.report()
    lines = lines_by_id(report)
    map_lines = yaml.safe_load((FIXTURES / "map.yml").read_text())["lines"]
    assert list(lines) == [line["id"] for line in map_lines]
    assert lines["migrate"]["run_status"] == "not run"  # its task was skipped
    assert lines["webhook-secret"]["run_status"] == "verified"  # it ran, but no_log: no value shown
    assert lines["webhook-secret"]["evidence"][0]["values"] == []
    assert lines["signoff"]["run_status"] == "not recorded"  # the run recorded no production gate
    assert lines["pci"]["run_status"] == "waived" and lines["dashboards"]["run_status"] == "planned"
    counted = collections.Counter(line["run_status"] for line in lines.values() if line["run_status"])
    assert {status: count for status, count in report["checklist"]["counts"].items() if count} == dict(counted)
    markdown = succeeded_run.texts()["md"]
    for line in map_lines:
        assert line["text"] in markdown


def test_no_secret_in_any_file(succeeded_run: Run) -> None:
    secrets = [succeeded_run.extra[name] for name in ("run_report_secret", "run_report_db_password", "run_report_restricted_key")]
    # every line of the private key's base64 body
    secrets += [line for line in succeeded_run.extra["run_report_private_key"].splitlines() if "-----" not in line]
    for suffix, text in succeeded_run.texts().items():
        for secret in secrets:
            assert secret not in text, f"{secret} in the {suffix} report"
    report = succeeded_run.report()
    hidden = [result for result in report["results"] if result["task"] == "Read the webhook signing secret"]
    assert hidden and hidden[0]["no_log"] and "fields" not in hidden[0] and "msg" not in hidden[0]
    said = [result for result in report["results"] if result["task"] == "Say something that looks like a key"]
    expected = "the restricted key is <redacted>, the database postgresql://payments:<redacted>@127.0.0.1/payments, the private key <redacted>"
    assert said[0]["msg"].strip() == expected
    assert all("invocation" not in json.dumps(result.get("fields", {})) for result in report["results"])


def test_journal_record_is_the_one_written(succeeded_run: Run) -> None:
    journal = succeeded_run.report()["journal"]
    on_disk = json.loads(Path(journal["file"]).read_text(encoding="utf-8"))
    assert journal["written"] is True
    assert journal["record"] == on_disk
    assert on_disk["run_id"] == succeeded_run.extra["run_report_run_id"]


def test_chart_from_the_run_own_samples(succeeded_run: Run) -> None:
    report = succeeded_run.report()
    chart = report["chart"]
    assert chart["source"] == "samples" and chart["picture"] is True and chart["missing"] is None
    assert chart["requests"] == len(succeeded_run.statuses)
    assert chart["errors"] == succeeded_run.statuses.count(503)
    assert chart["errors"] > 0
    assert len(chart["points"]) > 1
    assert sum(point["requests"] for point in chart["points"]) == len(succeeded_run.statuses)
    failed = sum(point["requests"] * point["error_rate"] for point in chart["points"])
    assert round(failed) == succeeded_run.statuses.count(503)
    for point in chart["points"]:
        assert abs(point["rps"] * chart["bucket_seconds"] - point["requests"]) < 0.01
    found = re.search(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", succeeded_run.texts()["html"])
    assert found
    assert png_size(base64.b64decode(found.group(1))) == (1000, 660)


def test_failed_run_says_where_it_stopped(failed_run: Run) -> None:
    assert failed_run.rc != 0
    report = failed_run.report()
    change = failed_run.extra["run_report_failing_change"]
    assert report["outcome"]["status"] == "failed" and report["outcome"]["failed_hosts"] == ["localhost"]
    stopped = report["outcome"]["stopped_at"]
    assert (stopped["phase"], stopped["task"]) == (PLAYS[1], "Apply the release's migrations")
    assert change in stopped["msg"]
    assert [(phase["phase"], phase["outcome"]) for phase in report["phases"]] == [(PLAYS[0], "rescued"), (PLAYS[1], "failed"),
                                                                                  (PLAYS[2], "not run")]
    assert report["outcome"]["first_failure"]["task"] == "Probe the previous colour"
    lines = lines_by_id(report)
    assert lines["migrate"]["run_status"] == "failed"
    # the frontend was sampled before the failure, the journal was never written
    assert [entry["status"] for entry in lines["health"]["evidence"]] == ["verified", "not run"]
    assert lines["health"]["run_status"] == "not run"
    assert report["journal"] is None
    # the sign-off recorded in the first play still counts
    assert lines["signoff"]["run_status"] == "signed off"
    assert lines["signoff"]["recorded"]["signoff"]["reference"] == "CHG-1042"
    texts = failed_run.texts()
    assert "**failed**" in texts["md"] and change in texts["md"]
    assert "id='stopped'" in texts["html"] and change in texts["html"]


def test_report_without_matplotlib_says_the_chart_is_missing(failed_run: Run) -> None:
    chart = failed_run.report()["chart"]
    assert chart["requests"] == len(failed_run.statuses)
    assert failed_run.statuses and chart["points"]
    assert chart["picture"] is False and "matplotlib" in chart["missing"]
    html = failed_run.texts()["html"]
    assert "id='chart-missing'" in html and "<img" not in html
    assert "matplotlib" in failed_run.texts()["md"]

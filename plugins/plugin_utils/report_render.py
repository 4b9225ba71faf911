# Copyright: Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run report as Markdown and as one self-contained HTML page (inline CSS, the chart as a data URI)."""

from __future__ import annotations

import html
import json

VALUE_LIMIT = 300
STATUS_CLASS = {
    "verified": "good", "done": "good", "succeeded": "good", "ok": "good", "changed": "good", "signed off": "good",
    "failed": "bad", "unreachable": "bad", "not run": "idle", "skipped": "idle", "not recorded": "warn", "rescued": "warn", "attested": "good",
    "automated": "info", "planned": "info", "waived": "warn",
}
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:24px auto;max-width:1150px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}code,.val{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;overflow-wrap:anywhere}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-weight:600;white-space:nowrap}
.good{background:#dafbe1;color:#116329}.bad{background:#ffebe9;color:#a40e26}.idle{background:#eaeef2;color:#57606a}
.warn{background:#fff8c5;color:#7d4e00}.info{background:#ddf4ff;color:#0550ae}
.counts td{text-align:center;font-size:16px}.group td{background:#f6f8fa;font-weight:600}
.summary{display:flex;gap:24px;flex-wrap:wrap}.summary div{min-width:150px}.muted{color:#57606a}
img.chart{max-width:100%;border:1px solid #d0d7de}
"""


def short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= VALUE_LIMIT else text[:VALUE_LIMIT] + "…"


def evidence_text(line: dict) -> list[str]:
    """One line per evidence value: host, task, field=value."""
    texts = []
    for entry in line.get("evidence") or []:
        if not entry["values"]:
            texts.append(f"{entry['evidence']}: {entry['status']}")
        for found in entry["values"]:
            fields = ", ".join(f"{name}={short(value)}" for name, value in found["fields"].items())
            texts.append(f"{found['host']} / {found['task']}: {fields or entry['status']}")
    for kind, entry in (line.get("recorded") or {}).items():
        texts.append(f"{kind}: " + ", ".join(f"{name}={short(value)}" for name, value in entry.items()))
    if line.get("run_status") == "not recorded":
        texts.append(f"no attestation, waiver or sign-off ({(line.get('gate') or {}).get('role') or 'no role'}) recorded in this run")
    for key in ("justification", "planned"):
        if line.get(key):
            texts.append(f"{key}: {short(line[key])}")
    return texts


def stopped_text(outcome: dict) -> str | None:
    stop = outcome.get("stopped_at")
    if not stop:
        return None
    return f"phase '{stop['phase']}', task '{stop['task']}' on {stop['host']}: {stop.get('msg') or 'failed'}"


def md_cell(value) -> str:
    return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict, chart_note: str | None) -> str:
    outcome, checklist = report["outcome"], report["checklist"]
    out = [f"# Run report: {report['run']}", "",
           f"- playbook: `{report['playbook']}`{' (check mode: nothing was changed)' if report.get('check_mode') else ''}",
           f"- outcome: **{outcome['status']}**",
           f"- started {report['started']}, ended {report['ended']} ({report['seconds']} s)"]
    if report.get("environment"):
        out.append(f"- environment: {report['environment']}")
    if stopped_text(outcome):
        out.append(f"- stopped at {stopped_text(outcome)}")
    if outcome.get("first_failure") and outcome["first_failure"] != outcome.get("stopped_at"):
        first = outcome["first_failure"]
        out.append(f"- first failure: phase '{first['phase']}', task '{first['task']}' on {first['host']}: {first.get('msg')}")
    counts = {status: count for status, count in checklist["counts"].items() if count}
    out += ["", "## Checklist in this run", ""]
    if checklist.get("problem"):
        out.append(f"_{checklist['problem']}_")
    out += ["| " + " | ".join(counts) + " |", "|" + "---|" * len(counts), "| " + " | ".join(map(str, counts.values())) + " |",
            "", "| id | line | checklist item | map status | in this run | evidence |", "|---|---|---|---|---|---|"]
    for line in checklist["lines"]:
        if line.get("kind") == "group":
            out.append(f"| {md_cell(line['id'])} | {md_cell(line['line'])} | **{md_cell(line['text'])}** | {md_cell(line['status'])} "
                       f"| {md_cell(line.get('run_status') or '')} | {len(line.get('items') or [])} items |")
            continue
        row = (line["id"], line["line"], line["text"], line["status"], line["run_status"], "<br>".join(evidence_text(line)))
        out.append("| " + " | ".join(md_cell(value) for value in row) + " |")
    out += ["", "## Phases", "", "| phase | start | end | seconds | tasks | outcome |", "|---|---|---|---|---|---|"]
    for phase in report["phases"]:
        out.append("| " + " | ".join(md_cell(phase[k]) for k in ("phase", "start", "end", "seconds", "tasks", "outcome")) + " |")
    out += ["", "## Chart", "", f"Source: {report['chart'].get('source')}, {len(report['chart'].get('points', []))} points"
            + (" (picture in the HTML report)" if not chart_note else f"; no picture: {chart_note}")]
    if report["chart"].get("note"):
        out.append(f"({report['chart']['note']})")
    out += ["", "## Journal", ""]
    journal = report.get("journal")
    out.append(f"```json\n{json.dumps(journal, indent=2, sort_keys=True)}\n```" if journal else "No journal record was written.")
    out += ["", "## Task results", "", "| phase | task | host | action | status | seconds |", "|---|---|---|---|---|---|"]
    for result in report["results"]:
        status = " ".join([result["status"]] + [f"({name})" for name in ("rescued", "ignored") if result.get(name)])
        out.append("| " + " | ".join(md_cell(v) for v in (result["phase"], result["task"], result["host"], result["action"], status,
                                                          result["seconds"])) + " |")
    return "\n".join(out) + "\n"


def badge(status) -> str:
    text = "" if status is None else str(status)
    return f'<span class="badge {STATUS_CLASS.get(text, "idle")}">{html.escape(text)}</span>' if text else ""


def result_note(result: dict) -> str:
    notes = [name for name in ("rescued", "ignored", "no_log") if result.get(name)]
    return f" <span class='muted'>{', '.join(notes).replace('_', ' ')}</span>" if notes else ""


def cells(values, tag: str = "td") -> str:
    return "".join(f"<{tag}>{value}</{tag}>" for value in values)


def to_html(report: dict, png: str | None, chart_note: str | None) -> str:
    esc = html.escape
    outcome, checklist = report["outcome"], report["checklist"]
    counts = {status: count for status, count in checklist["counts"].items() if count}
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Run report {esc(report['run'])}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>Run report: {esc(report['run'])}</h1>",
             "<div class='summary'>",
             f"<div>outcome<br>{badge(outcome['status'])}</div>",
             f"<div>playbook<br><code>{esc(report['playbook'])}</code>{' (check mode)' if report.get('check_mode') else ''}</div>",
             f"<div>environment<br>{esc(str(report.get('environment') or '-'))}</div>",
             f"<div>started<br>{esc(report['started'])}</div><div>duration<br>{report['seconds']} s</div></div>"]
    if stopped_text(outcome):
        parts.append(f"<p id='stopped'>{badge('failed')} stopped at {esc(stopped_text(outcome))}</p>")
    first = outcome.get("first_failure")
    if first and first != outcome.get("stopped_at"):
        parts.append(f"<p class='muted'>first failure: phase '{esc(str(first['phase']))}', task '{esc(first['task'])}' on "
                     f"{esc(first['host'])}: {esc(first.get('msg') or 'failed')}</p>")
    parts.append("<h2>Checklist in this run</h2>")
    if checklist.get("problem"):
        parts.append(f"<p class='muted'>{esc(checklist['problem'])}</p>")
    parts.append("<table class='counts' id='counts'><tr>" + cells((badge(s) for s in counts), "th") + "</tr><tr>"
                 + cells(counts.values()) + "</tr></table>")
    parts.append("<table id='checklist'><tr>" + cells(("id", "line", "checklist item", "map status", "in this run", "evidence"), "th")
                 + "</tr>")
    for line in checklist["lines"]:
        if line.get("kind") == "group":
            parts.append(f"<tr class='group' data-id='{esc(str(line['id']))}'>" + cells((
                esc(str(line["id"])), esc(str(line.get("line") or "")), esc(str(line["text"])), badge(line["status"]),
                badge(line.get("run_status")), f"{len(line.get('items') or [])} items")) + "</tr>")
            continue
        evidence = "<br>".join(f"<span class='val'>{esc(text)}</span>" for text in evidence_text(line))
        parts.append(f"<tr data-id='{esc(str(line['id']))}'>" + cells((esc(str(line["id"])), esc(str(line.get("line") or "")),
                     esc(str(line["text"])), badge(line["status"]), badge(line["run_status"]), evidence)) + "</tr>")
    parts.append("</table><h2>Phases</h2><table id='phases'><tr>"
                 + cells(("phase", "start", "end", "seconds", "tasks", "outcome"), "th") + "</tr>")
    for phase in report["phases"]:
        parts.append("<tr>" + cells((esc(phase["phase"]), esc(str(phase["start"] or "")), esc(str(phase["end"] or "")),
                                     phase["seconds"] if phase["seconds"] is not None else "", phase["tasks"],
                                     badge(phase["outcome"]))) + "</tr>")
    parts.append("</table><h2>Requests, errors and latency</h2>")
    if png:
        parts.append(f"<img class='chart' id='chart' alt='requests per second, error rate and p95 latency' "
                     f"src='data:image/png;base64,{png}'>")
    else:
        parts.append(f"<p id='chart-missing' class='muted'>No chart: {esc(chart_note or 'not drawn')}</p>")
    parts.append(f"<p class='muted'>Source: {esc(str(report['chart'].get('source')))}, "
                 f"{len(report['chart'].get('points', []))} points. {esc(report['chart'].get('note') or '')}</p>")
    journal = report.get("journal")
    parts.append("<h2>Journal</h2>" + (f"<pre class='val' id='journal'>{esc(json.dumps(journal, indent=2, sort_keys=True))}</pre>"
                                       if journal else "<p class='muted'>No journal record was written.</p>"))
    parts.append("<h2>Task results</h2><table id='results'><tr>"
                 + cells(("phase", "task", "host", "action", "status", "seconds"), "th") + "</tr>")
    for result in report["results"]:
        parts.append("<tr>" + cells((esc(str(result.get("phase"))), esc(result["task"]), esc(result["host"]),
                                     f"<code>{esc(result['action'])}</code>", badge(result["status"]) + result_note(result), result["seconds"])) + "</tr>")
    parts.append("</table></body></html>\n")
    return "\n".join(parts)

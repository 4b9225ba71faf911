# Copyright: Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writes a run report's files atomically: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ansible_collections.payments.deploy.plugins.plugin_utils.report_render import to_html, to_markdown

MODE = 0o640


def write_atomic(path: Path, text: str) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, MODE)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_report(directory: str, report: dict, png: str | None, chart_note: str | None) -> list[str]:
    """<directory>/<run>.json, .md and .html; the paths written."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    report = dict(report, chart=dict(report["chart"], picture=bool(png), missing=chart_note))
    texts = {"json": json.dumps(report, indent=2, sort_keys=True, default=str) + "\n",
             "md": to_markdown(report, chart_note), "html": to_html(report, png, chart_note)}
    paths = []
    for suffix, text in texts.items():
        path = folder / f"{report['run']}.{suffix}"
        write_atomic(path, text)
        paths.append(str(path))
    return paths

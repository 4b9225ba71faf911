"""The HTML report in a real browser: headless Chromium renders it (a screenshot that is not blank) and its DOM
holds the checklist, phase and result rows and the chart image."""

from __future__ import annotations

import re
import shutil
import subprocess
import typing as t
from pathlib import Path

import pytest

from conftest import Run
from png_pixels import colours, decode

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1200, 1600
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package chromium)")


def chromium(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={home / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=False, env={"HOME": str(home), "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def shown(succeeded_run: Run, tmp_path_factory: pytest.TempPathFactory) -> dict[str, t.Any]:
    home = tmp_path_factory.mktemp("chromium")
    url = succeeded_run.files()["html"].as_uri()
    screenshot = home / "report.png"
    shot = chromium(f"--screenshot={screenshot}", f"--window-size={WIDTH},{HEIGHT}", url, home=home)
    assert screenshot.is_file(), shot.stderr[-2000:]
    dom = chromium("--dump-dom", url, home=home)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return {"png": screenshot.read_bytes(), "dom": dom.stdout}


def test_screenshot_is_the_page_not_a_blank(shown: dict[str, t.Any]) -> None:
    width, height, rows = decode(shown["png"])
    assert (width, height) == (WIDTH, HEIGHT)
    seen = colours(rows)
    # Text, status badges and the chart's lines: far more than the handful of colours of an empty page.
    assert len(seen) > 50, len(seen)
    assert b"\xda\xfb\xe1" in seen  # the green of a passing badge (#dafbe1) is on screen


def test_dom_holds_the_rows_and_the_chart(shown: dict[str, t.Any], succeeded_run: Run) -> None:
    report = succeeded_run.report()
    dom = shown["dom"]
    for line in report["checklist"]["lines"]:
        assert re.search(rf"<tr[^>]*data-id=\"{re.escape(line['id'])}\"", dom), line["id"]
    table = re.search(r"<table id=\"phases\">(.*?)</table>", dom, re.S)
    assert table and table.group(1).count("<tr>") == len(report["phases"]) + 1
    results = re.search(r"<table id=\"results\">(.*?)</table>", dom, re.S)
    assert results and results.group(1).count("<tr>") == len(report["results"]) + 1
    assert re.search(r"<img class=\"chart\" id=\"chart\"[^>]*src=\"data:image/png;base64,", dom)


def test_page_needs_nothing_from_outside(succeeded_run: Run) -> None:
    page = succeeded_run.texts()["html"]
    assert not re.search(r"""(?:src|href)\s*=\s*['"]?(?:https?:)?//""", page)
    assert "<link" not in page and "<script" not in page

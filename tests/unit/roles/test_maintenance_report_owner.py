"""The maintenance report's directory and files take maintenance_report_owner and maintenance_report_group: a group
of operators may read the reports (0640 in a 0750 directory) that root writes. Run through ansible-playbook."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import COLLECTIONS_DIR

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
PLAY = """
- name: Write a maintenance report
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Report
      ansible.builtin.include_role:
        name: payments.deploy.maintenance
        tasks_from: report
"""


def report_run(tmp_path: Path, reports: Path, **ownership: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "play.yml").write_text(PLAY)
    variables = {"maintenance_environment": "production", "maintenance_report_dir": str(reports), "__maintenance_kind": "daily",
                 "__maintenance_breaches": [], "__maintenance_notes": ["a note"], "__maintenance_sections": {"backup": {"count": 1}},
                 **ownership}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    run_env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_DIR), ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
                           str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'vars.json'}"], capture_output=True, text=True,
                          env=run_env, cwd=tmp_path, timeout=120, check=False)


def ownership(path: Path) -> tuple[str, str, str]:
    stat = path.stat()
    return pwd.getpwuid(stat.st_uid).pw_name, grp.getgrgid(stat.st_gid).gr_name, oct(stat.st_mode & 0o777)


@pytest.mark.skipif(os.geteuid() != 0, reason="gives files to another owner: needs root")
def test_owner_and_group_are_given_to_the_report_directory_and_files(tmp_path: Path) -> None:
    pwd.getpwnam("postgres")
    top = Path(tempfile.mkdtemp(prefix="payments-maintenance-"))
    try:
        reports = top / "maintenance"
        run = report_run(tmp_path, reports, maintenance_report_owner="postgres", maintenance_report_group="postgres")
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert ownership(reports) == ("postgres", "postgres", "0o750")
        files = sorted(reports.iterdir())
        assert [path.suffix for path in files] == [".json", ".md"]
        assert {ownership(path) for path in files} == {("postgres", "postgres", "0o640")}
        assert json.loads(files[0].read_text())["passed"] is True
        # without them, the files belong to whoever wrote them (root here)
        again = top / "plain"
        run = report_run(tmp_path, again)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert {ownership(path)[:2] for path in [again, *again.iterdir()]} == {("root", "root")}
    finally:
        shutil.rmtree(top)

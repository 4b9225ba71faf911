"""Runs recovery/payments_backup_recover.py as an operator would, in a process where the collection cannot be imported.

The script runs under ``python -I`` (no PYTHONPATH, no user site, not even its own directory on sys.path) from an empty
directory, behind an import hook that refuses ``ansible`` and ``ansible_collections``: any import of them fails the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "recovery" / "payments_backup_recover.py"
ROW_COUNTS_SQL = REPO / "recovery" / "row_counts.sql"
PG_RESTORE = "/usr/lib/postgresql/15/bin/pg_restore"
PSQL = "/usr/lib/postgresql/15/bin/psql"
REFUSED_PACKAGES = ("ansible", "ansible_collections")

# runs the script as __main__ after installing the hook
GUARDED_START = """
import runpy, sys
class RefuseCollection:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in REFUSED:
            raise ImportError('import of ' + name + ' refused: recovery must work without the collection')
        return None
REFUSED = sys.argv[1].split(',')
sys.meta_path.insert(0, RefuseCollection())
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


@dataclasses.dataclass
class Backup:
    """The two files pg_backup stores for one backup."""

    backup_id: str
    directory: Path

    @property
    def object_path(self) -> Path:
        return self.directory / f"{self.backup_id}.dump.zst.enc"

    @property
    def manifest_path(self) -> Path:
        return self.directory / f"{self.backup_id}.manifest.json"

    def manifest(self) -> dict[str, t.Any]:
        return json.loads(self.manifest_path.read_text())


def operator_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A bare environment: nothing that could point Python at the collection."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update(extra or {})
    return env


def recover_command(*args: str, importtime: bool = False, script: Path = SCRIPT, refused: t.Sequence[str] = REFUSED_PACKAGES) -> list[str]:
    """``refused`` may add Python packages the script must do without (``zstandard``: it falls back to the zstd program)."""
    flags = ["-I", *(["-X", "importtime"] if importtime else [])]
    return [sys.executable, *flags, "-c", GUARDED_START, ",".join(refused), str(script), *args]


def recover(cwd: Path, *args: str, env: dict[str, str] | None = None, importtime: bool = False,
            refused: t.Sequence[str] = REFUSED_PACKAGES) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(recover_command(*args, importtime=importtime, refused=refused), cwd=cwd, env=operator_env(env),
                          capture_output=True, check=False, timeout=300)


def imported_modules(stderr: str) -> list[str]:
    """Module names from ``-X importtime`` lines (``import time:  self | cumulative | name``), attempts that failed included."""
    names = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.append(line.rsplit("|", 1)[1].strip())
    return [name for name in names if name != "imported package"]


def restore_archive(cluster: t.Any, archive: Path | None, dbname: str, stdin: t.Any = None) -> subprocess.CompletedProcess[bytes]:
    """pg_restore of a recovered archive (a file, or stdin) into a new database ``dbname``."""
    cluster.execute(f'CREATE DATABASE "{dbname}"')
    conninfo = f"host=127.0.0.1 port={cluster.port} user={cluster.user} dbname={dbname}"
    argv = [PG_RESTORE, "--exit-on-error", "--no-owner", "-d", conninfo, *([str(archive)] if archive else [])]
    return subprocess.run(argv, stdin=stdin, capture_output=True, check=False, timeout=300,
                          env=operator_env({"PGPASSWORD": cluster.password}))


def documented_row_counts(cluster: t.Any, dbname: str) -> str:
    """The output of recovery/row_counts.sql through psql, run as docs/backup-recovery-by-hand.md says."""
    conninfo = f"host=127.0.0.1 port={cluster.port} user={cluster.user} dbname={dbname}"
    proc = subprocess.run([PSQL, "-X", "-A", "-t", "-F", " ", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-f", str(ROW_COUNTS_SQL)],
                          capture_output=True, text=True, check=False, timeout=120, env=operator_env({"PGPASSWORD": cluster.password}))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def manifest_row_counts(manifest_path: Path) -> str:
    """What the documented ``jq -r '.row_counts | to_entries[] | "\\(.key) \\(.value)"' | LC_ALL=C sort`` prints (jq itself
    when installed, else the same in Python)."""
    if shutil.which("jq"):
        listed = subprocess.run(["jq", "-r", '.row_counts | to_entries[] | "\\(.key) \\(.value)"', str(manifest_path)],
                                capture_output=True, text=True, check=True, timeout=60).stdout
        lines = listed.splitlines()
    else:
        lines = [f"{name} {count}" for name, count in json.loads(manifest_path.read_text())["row_counts"].items()]
    return "".join(line + "\n" for line in sorted(lines, key=lambda line: line.encode()))

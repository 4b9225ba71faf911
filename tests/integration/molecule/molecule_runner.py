"""Runs a molecule scenario of the collection (extensions/molecule) from the checkout's root as a developer does, in
an ephemeral directory of its own so that a run never meets another run's state."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path
from host_python import HOST_PYTHON

REPO = Path(__file__).resolve().parents[3]
SCENARIOS = REPO / "extensions" / "molecule"
# `make test` runs the release, migrate, backup, traffic_switch and smoke_test scenarios; PAYMENTS_MOLECULE_ALL=1 adds
# deploy_lock, loadbalancer and monitoring, whose roles' integration suites check the same programs (docs/molecule.md).
# `make molecule` runs all eight through molecule itself.
ALL_SCENARIOS = os.environ.get("PAYMENTS_MOLECULE_ALL") == "1"
VENV_BIN = Path(sys.executable).parent
MOLECULE = shutil.which("molecule", path=str(VENV_BIN)) or shutil.which("molecule")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class MoleculeRun(t.NamedTuple):
    rc: int
    output: str  # stdout and stderr, without colours

    def action_result(self, scenario_name: str, action: str) -> str:
        """What the run's summary says of one action (``Executed: Successful``), empty when it did not run. The arrow is
        ``>`` under NO_COLOR."""
        found = re.findall(rf"^{re.escape(scenario_name)} (?:➜|>) {re.escape(action)}: (.*)$", self.output, re.MULTILINE)
        return found[-1].strip() if found else ""


class Scenario:
    """One scenario run by ``molecule`` as a developer runs it, with the environment variables the scenario reads."""

    def __init__(self, name: str, collections: Path, ephemeral: Path) -> None:
        self.name = name
        self.ephemeral = ephemeral
        self.state = ephemeral / "state"  # what create makes and destroy removes
        self.env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), MOLECULE_EPHEMERAL_DIRECTORY=str(ephemeral),
                        NO_COLOR="1", ANSIBLE_NOCOLOR="1", PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        for name_of_variable in ("MOLECULE_GLOB", "ANSIBLE_CONFIG", "ANSIBLE_FORCE_COLOR"):
            self.env.pop(name_of_variable, None)

    def molecule(self, *args: str) -> MoleculeRun:
        assert MOLECULE is not None
        proc = subprocess.run([MOLECULE, *args, "--scenario-name", self.name], cwd=REPO, env=self.env,
                              capture_output=True, text=True, check=False, timeout=600)
        return MoleculeRun(proc.returncode, ANSI.sub("", proc.stdout + proc.stderr))

    def ansible(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An ad-hoc ansible command on this machine, with the scenario's collections and interpreter."""
        cmd = [str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
               "-e", f"ansible_python_interpreter={HOST_PYTHON}", *args]
        env = dict(self.env, ANSIBLE_CONFIG=str(self.ephemeral / "adhoc.cfg"))
        (self.ephemeral / "adhoc.cfg").write_text("[defaults]\n")  # not the checkout's: its callbacks print too
        return subprocess.run(cmd, cwd=self.ephemeral, env=env, capture_output=True, text=True, check=False, timeout=300)

"""The interpreter that the suites' managed hosts (localhost, with the local connection) run the collection's modules
on: the lab hosts' .venv-hosts (Debian's python3 with what roles/host_dependencies lists, `make host-venv`), as a
production host runs them on its /usr/bin/python3; the controller's own interpreter when that venv was not built.
Module runs are most of a suite's playbook time, and the modules must work on the hosts' older Python too."""

from __future__ import annotations

import sys
from pathlib import Path

_VENV = Path(sys.executable).parent.parent
_BUILT = _VENV.with_name(_VENV.name + "-hosts") / "bin" / "python"
HOST_PYTHON = str(_BUILT) if _BUILT.exists() else sys.executable

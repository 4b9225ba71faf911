"""Run a Stripe module in-process against the unit tests' fake Stripe API and return its result."""

from __future__ import annotations

import json
import typing as t

import pytest

from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

TEST_KEY = "sk_test_" + "a" * 20 + "t3st"
LIVE_KEY = "sk_live_" + "b" * 20 + "l1ve"
RESTRICTED_KEY = "rk_test_" + "c" * 20 + "rstr"


def run(module: t.Any, capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], check: bool = False, diff: bool = False) -> dict[str, t.Any]:
    """The module's result; the raw output is kept in ``_raw`` for the tests that look for leaked secrets.

    ``warnings`` becomes a list of messages (Ansible keeps them per process, so they are cleared before each run).
    """
    ansible_warnings._global_warnings.clear()  # pylint: disable=protected-access
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    out = capsys.readouterr().out
    result = json.loads(out)
    result["_raw"] = out
    result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]
    return result

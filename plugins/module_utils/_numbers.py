# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Checks of numeric module options, shared by the modules.

Private to the payments.deploy collection: the interface may change without notice.
Ansible's ``float`` type accepts ``nan`` and ``inf``; every comparison with NaN is false, so ``value <= 0`` alone lets
it through (a NaN timeout waits forever or crashes the socket code, a NaN threshold disables a gate).
"""

from __future__ import annotations

import math
import typing as t


def number_problem(option: str, value: t.Any, minimum: float = 0.0, maximum: float | None = None,
                   allow_minimum: bool = False, unit: str = "seconds") -> str | None:
    """Why ``value`` is not a finite number above ``minimum`` (or equal to it with ``allow_minimum``) and at most
    ``maximum``; None when it is."""
    low = f"at least {minimum:g}" if allow_minimum else f"more than {minimum:g}"
    wanted = f"{low}" + (f" and at most {maximum:g}" if maximum is not None else "")
    problem = f"{option} must be {wanted} {unit} (a finite number; got {value!r})"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return problem
    if value < minimum or (value == minimum and not allow_minimum):
        return problem
    if maximum is not None and value > maximum:
        return problem
    return None


def number_problems(params: t.Mapping[str, t.Any], rules: t.Mapping[str, t.Mapping[str, t.Any]]) -> list[str]:
    """``number_problem`` for each ``option: keyword arguments`` in ``rules`` whose value is set."""
    found = (number_problem(option, params[option], **rule) for option, rule in rules.items()
             if params.get(option) is not None)
    return [problem for problem in found if problem]

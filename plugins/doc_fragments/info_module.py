# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attributes every *_info module of the collection shares: it only reads, so check mode changes nothing."""

from __future__ import annotations


class ModuleDocFragment:
    """Check mode, diff mode and platform of the info modules."""

    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    details: Only reads (files, sockets, HTTP C(GET) requests, API reads), so it runs the same way in check mode and changes nothing.
  diff_mode:
    support: N/A
    details: Changes nothing, so there is no diff.
  platform:
    platforms: posix
"""

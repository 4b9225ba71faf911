"""Faults baked into a deliberately wrong build (build_release.py --fault), to prove that smoke checks catch them.

A normal build ships no build_faults.json and has none. A fault build ships the list, and the service logs a
warning at start for each fault: such a release must never serve real traffic.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import ConfigError

FAULTS_PATH = Path(__file__).resolve().parent / "build_faults.json"
AUTH_DISABLED = "auth-disabled"  # every endpoint accepts any request, with the API and the admin role
NO_SECURITY_HEADERS = "no-security-headers"  # responses carry no security header
KNOWN = {AUTH_DISABLED: "every endpoint accepts requests without a valid token",
         NO_SECURITY_HEADERS: "responses carry no security headers"}


def load_build_faults(path: Path = FAULTS_PATH) -> frozenset[str]:
    """The faults of this build: none without the file; an unknown or malformed list stops the start."""
    if not path.exists():
        return frozenset()
    try:
        faults = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path.name}: {type(exc).__name__}") from None
    if not isinstance(faults, list) or not all(isinstance(name, str) and name in KNOWN for name in faults):
        raise ConfigError(f"{path.name} must be a list of known build faults ({', '.join(sorted(KNOWN))})")
    return frozenset(faults)

"""The release manifest: the version the running code was built as."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError

RELEASE_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_PATH = RELEASE_ROOT / "manifest.json"


@dataclass(frozen=True)
class Manifest:
    """Name and version of the release this package was shipped in."""

    name: str
    version: str


def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    """Read manifest.json next to the package; without it the version would be a guess."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(name=str(data["name"]), version=str(data["version"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the release manifest {path}: {type(exc).__name__}") from None

"""The lab's production sign-offs: one file per built release, as a change board would hand them over.

Production refuses an artifact without the checklist's four sign-offs for its sha256 and an attestation (or a
justified waiver) for every manual gate of checklist/map.yml (roles/production_gate, docs/signoff.md). The lab signs
every release it builds, freshly dated on every `labctl up`, so that its deploys pass the gate; the gate's refusals
have their own tests.
"""
from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CHECKLIST_MAP = REPO / "checklist" / "map.yml"
SIGNERS = {
    "development_lead": "Lab Development Lead",
    "security_officer": "Lab Security Officer",
    "operations_manager": "Lab Operations Manager",
    "business_owner": "Lab Business Owner",
}


def gate_lines(checklist_map: Path = CHECKLIST_MAP) -> list[str]:
    """The ids of the checklist items a person must attest."""
    lines = yaml.safe_load(checklist_map.read_text())["lines"]
    return [line["id"] for line in lines if line["status"] == "gate" and line["kind"] == "item"]


def signoff_document(version: str, sha256: str, today: str, gates: list[str]) -> dict:
    reference = f"LAB-{version}"
    return {
        "signoffs": {role: {"name": name, "date": today, "reference": reference, "sha256": sha256}
                     for role, name in SIGNERS.items()},
        "attestations": {line: {"by": SIGNERS["operations_manager"], "date": today,
                                "reference": f"{reference}: lab release, attested for the lab's own deploys"}
                         for line in gates},
        "waivers": {},
    }


def write_signoffs(state: Path) -> list[Path]:
    """Write STATE/signoffs/VERSION.yml for every artifact in STATE/artifacts; returns the files written."""
    out = state / "signoffs"
    out.mkdir(mode=0o700, exist_ok=True)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    gates = gate_lines()
    written = []
    for tarball in sorted((state / "artifacts").glob("*.tar.gz")):
        version = tarball.name[:-len(".tar.gz")].rsplit("-", 1)[1]
        sha256 = hashlib.sha256(tarball.read_bytes()).hexdigest()
        path = out / f"{version}.yml"
        path.write_text("# Written by labctl up: the lab's sign-offs of this artifact (docs/signoff.md).\n"
                        + yaml.safe_dump(signoff_document(version, sha256, today, gates), sort_keys=False))
        written.append(path)
    return written

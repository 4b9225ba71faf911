"""Unit tests of dependency_audit_info: OSV advisories written as real files, matched against pins and package lists."""

from __future__ import annotations

import datetime
import json
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _dependency_audit as audit_lib
from ansible_collections.payments.deploy.plugins.modules import dependency_audit_info

JUSTIFIED = "The vulnerable code path is never called by the payment service."


def advisory(ident: str, package: str, ranges: list[list[dict[str, str]]], **extra: t.Any) -> dict[str, t.Any]:
    return {"id": ident, "summary": f"{ident} summary", "aliases": extra.pop("aliases", []),
            "affected": [{"package": {"ecosystem": "PyPI", "name": package},
                          "ranges": [{"type": "ECOSYSTEM", "events": events} for events in ranges],
                          **({"versions": extra.pop("versions")} if "versions" in extra else {})}],
            **extra}


def write_db(root: Path, *advisories: dict[str, t.Any]) -> Path:
    db = root / "db"
    db.mkdir(exist_ok=True)
    for item in advisories:
        (db / f"{item.get('id', 'no-id')}.json").write_text(json.dumps(item), encoding="utf-8")
    return db


def run(capsys: pytest.CaptureFixture[str], **args: t.Any) -> dict[str, t.Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        dependency_audit_info.main()
    result: dict[str, t.Any] = json.loads(capsys.readouterr().out)
    return result


def matched(capsys: pytest.CaptureFixture[str], db: Path, package: str, version: str) -> list[str]:
    result = run(capsys, database=str(db), packages=[{"name": package, "version": version}])
    assert not result.get("failed"), result
    return [f["id"] for f in result["findings"]]


RANGE_CASES = [
    # (events of one or more ranges, version, affected)
    ([[{"introduced": "0"}, {"fixed": "2.0.0"}]], "1.9.9", True),
    ([[{"introduced": "0"}, {"fixed": "2.0.0"}]], "2.0.0", False),
    ([[{"introduced": "1.2.0"}, {"fixed": "2.0.0"}]], "1.1.9", False),
    ([[{"introduced": "1.2.0"}, {"fixed": "2.0.0"}]], "1.2.0", True),
    ([[{"introduced": "1.0"}, {"last_affected": "1.4.2"}]], "1.4.2", True),
    ([[{"introduced": "1.0"}, {"last_affected": "1.4.2"}]], "1.4.3", False),
    ([[{"introduced": "1.0"}, {"fixed": "1.5"}], [{"introduced": "2.0"}, {"fixed": "2.3"}]], "1.7", False),
    ([[{"introduced": "1.0"}, {"fixed": "1.5"}], [{"introduced": "2.0"}, {"fixed": "2.3"}]], "2.1", True),
    ([[{"introduced": "1.0"}, {"fixed": "1.5"}, {"introduced": "2.0"}, {"fixed": "2.3"}]], "1.5.1", False),
    ([[{"introduced": "1.0"}, {"fixed": "1.5"}, {"introduced": "2.0"}, {"fixed": "2.3"}]], "2.2.9", True),
    ([[{"introduced": "0"}, {"fixed": "2.0.0"}]], "2.0.0rc1", True),
    ([[{"introduced": "0"}, {"fixed": "2.0.0"}]], "2.0.0.post1", False),
    ([[{"introduced": "2.0.0"}, {"fixed": "2.1.0"}]], "2.0.0b2", False),
    ([[{"introduced": "0"}, {"limit": "3.0"}]], "3.1", False),
    ([[{"introduced": "0"}, {"limit": "3.0"}]], "2.9", True),
    ([[{"introduced": "0"}]], "99.0", True),
]


@pytest.mark.parametrize(("ranges", "version", "affected"), RANGE_CASES)
def test_ranges(tmp_path: Path, capsys: pytest.CaptureFixture[str], ranges: list[list[dict[str, str]]], version: str,
                affected: bool) -> None:
    db = write_db(tmp_path, advisory("TEST-1", "example-lib", ranges))
    assert matched(capsys, db, "example-lib", version) == (["TEST-1"] if affected else [])


def test_explicit_versions_and_other_packages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = write_db(tmp_path, advisory("TEST-V", "example-lib", [], versions=["1.0.1", "1.0.3"]))
    assert matched(capsys, db, "example-lib", "1.0.3") == ["TEST-V"]
    assert matched(capsys, db, "example-lib", "1.0.2") == []
    assert matched(capsys, db, "other-lib", "1.0.3") == []


def test_names_are_compared_normalized_and_withdrawn_advisories_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = write_db(tmp_path, advisory("TEST-N", "Example_Lib", [[{"introduced": "0"}]]),
                  advisory("TEST-W", "example-lib", [[{"introduced": "0"}]], withdrawn="2026-01-01T00:00:00Z"))
    assert matched(capsys, db, "example.lib", "1.0") == ["TEST-N"]


def test_finding_fields_and_severity_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"
    db = write_db(tmp_path,
                  advisory("TEST-C", "lib-a", [[{"introduced": "0"}, {"fixed": "1.2"}]], aliases=["CVE-0000-0001"],
                           severity=[{"type": "CVSS_V3", "score": vector}]),
                  advisory("TEST-M", "lib-a", [[{"introduced": "0"}, {"fixed": "1.3"}]], database_specific={"severity": "MODERATE"}),
                  advisory("TEST-U", "lib-b", [[{"introduced": "0"}]]))
    result = run(capsys, database=str(db), packages=[{"name": "lib-a", "version": "1.1"}, {"name": "lib-b", "version": "0.1"}])
    by_id = {f["id"]: f for f in result["findings"]}
    assert by_id["TEST-C"]["severity"] == audit_lib.score_severity(audit_lib.cvss3_score(vector))
    assert by_id["TEST-C"]["aliases"] == ["CVE-0000-0001"]
    assert by_id["TEST-C"]["fixed_versions"] == ["1.2"]
    assert by_id["TEST-C"]["installed_version"] == "1.1"
    assert by_id["TEST-M"]["severity"] == "medium"
    # no severity at all: unknown, and it blocks at the default threshold (fail closed)
    assert by_id["TEST-U"]["severity"] == "unknown"
    assert [f["id"] for f in result["blocking"]] == ["TEST-U"]
    assert result["passed"] is False


@pytest.mark.parametrize(("vector", "score"), [
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
    ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
    ("CVSS:3.0/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.8),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
])
def test_cvss3_scores_from_the_specification_calculator(vector: str, score: float) -> None:
    # scores as FIRST's calculator gives them for these vectors
    assert audit_lib.cvss3_score(vector) == score


def test_requirements_file_pins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = write_db(tmp_path, advisory("TEST-R", "pinned-lib", [[{"introduced": "0"}, {"fixed": "2.0"}]]))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pins\nother==3.0\npinned-lib[extra]==1.5 ; python_version >= '3.9' \\\n"
                            "    --hash=sha256:00\n", encoding="utf-8")
    result = run(capsys, database=str(db), requirements_files=[str(requirements)])
    assert result["packages_scanned"] == 2
    assert [(f["id"], f["source"]) for f in result["findings"]] == [("TEST-R", f"{requirements}:3")]


def test_unpinned_requirement_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = write_db(tmp_path, advisory("TEST-R", "pinned-lib", [[{"introduced": "0"}]]))
    result = run(capsys, database=str(db), requirements=["pinned-lib>=1.0"])
    assert result["failed"] is True
    assert "requirements:1" in result["msg"] and "not pinned" in result["msg"]


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "cannot be read as JSON"),
    (json.dumps({"summary": "no id", "affected": []}), "no valid id"),
    (json.dumps(advisory("BAD-1", "x", [[{"introduced": "0", "fixed": "1.0"}]])), "exactly one of"),
    (json.dumps(advisory("BAD-2", "x", [[{"fixed": "1.0"}]])), "needs an introduced event"),
    (json.dumps(advisory("BAD-3", "x", [[{"introduced": "0"}, {"fixed": "not a version!"}]])), "not a PEP 440 version"),
    (json.dumps(advisory("BAD-4", "x", [[{"introduced": "0"}, {"fixed": "2"}, {"last_affected": "1"}]])), "both fixed and last_affected"),
    (json.dumps(advisory("BAD-5", "x", [[{"introduced": "0"}]], database_specific={"severity": "apocalyptic"})), "database_specific.severity"),
    (json.dumps(advisory("BAD-6", "x", [[{"introduced": "0"}]], severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N"}])), "CVSS"),
    (json.dumps({"id": "BAD-7", "affected": [{"package": {"name": "x"}}]}), "name and an ecosystem"),
])
def test_malformed_advisory_is_refused_naming_file_and_id(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str,
                                                          expected: str) -> None:
    db = write_db(tmp_path, advisory("GOOD-1", "x", [[{"introduced": "0"}]]))
    (db / "zz-broken.json").write_text(content, encoding="utf-8")
    result = run(capsys, database=str(db), packages=[{"name": "x", "version": "1.0"}])
    assert result["failed"] is True
    assert "zz-broken.json" in result["msg"] and expected in result["msg"], result["msg"]
    assert "findings" not in result


def today(offset: int = 0) -> str:
    return (datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=offset)).isoformat()


def critical_db(root: Path) -> Path:
    return write_db(root, advisory("TEST-CRIT", "lib-a", [[{"introduced": "0"}, {"fixed": "9"}]], aliases=["CVE-0000-0002"],
                                   database_specific={"severity": "CRITICAL"}),
                    advisory("TEST-HIGH", "lib-a", [[{"introduced": "0"}, {"fixed": "9"}]], database_specific={"severity": "HIGH"}))


def test_threshold_and_waivers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = critical_db(tmp_path)
    packages = [{"name": "lib-a", "version": "1.0"}]
    default = run(capsys, database=str(db), packages=packages)
    assert [f["id"] for f in default["blocking"]] == ["TEST-CRIT"] and not default["passed"]
    high = run(capsys, database=str(db), packages=packages, block_severity="high")
    assert sorted(f["id"] for f in high["blocking"]) == ["TEST-CRIT", "TEST-HIGH"]
    waiver = {"by": "Grace Hopper", "date": today(), "justification": JUSTIFIED}
    by_alias = run(capsys, database=str(db), packages=packages, waivers={"CVE-0000-0002": waiver})
    assert by_alias["passed"] is True and by_alias["blocking"] == []
    assert [(f["id"], f["waiver"]["by"]) for f in by_alias["waived"]] == [("TEST-CRIT", "Grace Hopper")]
    assert len(by_alias["findings"]) == 2


@pytest.mark.parametrize(("waiver", "expected"), [
    ({"by": "Grace Hopper", "date": today(), "justification": "accepted"}, "is not justified"),
    ({"by": "", "date": today(), "justification": JUSTIFIED}, "names nobody"),
    ({"by": "Grace Hopper", "date": "last week", "justification": JUSTIFIED}, "needs a date"),
    ({"by": "Grace Hopper", "date": today(30), "justification": JUSTIFIED}, "in the future"),
    ({"by": "Grace Hopper", "date": today(), "justification": JUSTIFIED, "expires": "never"}, "unknown keys"),
])
def test_bad_waiver_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], waiver: dict[str, str], expected: str) -> None:
    result = run(capsys, database=str(critical_db(tmp_path)), packages=[{"name": "lib-a", "version": "1.0"}],
                 waivers={"TEST-CRIT": waiver})
    assert result["failed"] is True
    assert "waivers.TEST-CRIT" in result["msg"] and expected in result["msg"], result["msg"]


def test_lab_database_reports_a_finding_below_the_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    lab_db = Path(__file__).resolve().parents[4] / "lab" / "advisories"
    requirements = Path(__file__).resolve().parents[4] / "requirements-dev.txt"
    pins = [line for line in requirements.read_text(encoding="utf-8").splitlines() if "==" in line]
    result = run(capsys, database=str(lab_db), requirements=pins)
    assert result["findings"], "the lab's database must match a pin the lab runs"
    assert result["passed"] is True and result["blocking"] == []
    assert all(audit_lib.rank(f["severity"]) < audit_lib.rank("critical") for f in result["findings"])

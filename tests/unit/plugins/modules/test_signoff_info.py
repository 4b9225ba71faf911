"""Unit tests of signoff_info: real sign-off files and checklist maps in a temporary directory, judged by the module."""

from __future__ import annotations

import datetime
import hashlib
import json
import typing as t
from pathlib import Path

import pytest
import yaml

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.modules import signoff_info

SHA = hashlib.sha256(b"payment-service-1.4.2.tar.gz").hexdigest()
OTHER_SHA = hashlib.sha256(b"payment-service-1.4.1.tar.gz").hexdigest()
ROLES = ("development_lead", "security_officer", "operations_manager", "business_owner")
PEOPLE = ("Ada Lovelace", "Grace Hopper", "Margaret Hamilton", "Lex Luthor")
MAP = {"lines": [
    {"id": "security", "kind": "group", "status": "gate", "text": "Security", "section": "Pre-deployment"},
    {"id": "pen-test", "kind": "item", "status": "gate", "text": "Penetration test passed", "section": "Security",
     "gate": {"role": "security_officer", "reason": "an external firm runs it"}},
    {"id": "load-test", "kind": "item", "status": "gate", "text": "Load testing completed", "section": "Performance",
     "gate": {"role": "operations_manager", "reason": "needs a production-sized environment"}},
    {"id": "pci", "kind": "item", "status": "gate", "text": "PCI DSS compliance verified", "section": "Compliance"},
    {"id": "backup", "kind": "item", "status": "automated", "text": "Backup current production data"},
]}
JUSTIFICATION = "Card data never reaches our servers: Stripe Elements tokenises it (SAQ A scope)."


def day(offset: int = 0) -> str:
    return (datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=offset)).isoformat()


def complete() -> dict[str, t.Any]:
    return {
        "signoffs": {role: {"name": person, "date": day(1), "reference": f"CHG-{100 + index}", "sha256": SHA}
                     for index, (role, person) in enumerate(zip(ROLES, PEOPLE))},
        "attestations": {"pen-test": {"by": "Grace Hopper", "date": day(3), "reference": "PT-2026-11"},
                         "load-test": {"by": "Margaret Hamilton", "date": day(2), "reference": "LOAD-77"}},
        "waivers": {"pci": {"by": "Lex Luthor", "date": day(40), "justification": JUSTIFICATION}},
    }


def write(tmp_path: Path, document: t.Any, name: str = "signoffs.yml") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False))
    return path


def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, document: t.Any = None, **args: t.Any) -> dict[str, t.Any]:
    params: dict[str, t.Any] = {"release_sha256": SHA, "checklist_map": str(write(tmp_path, MAP, "map.yml"))}
    if document is not None:
        params["signoff_file"] = str(write(tmp_path, document))
    params.update(args)
    with patch_module_args(params), pytest.raises(SystemExit):
        signoff_info.main()
    return json.loads(capsys.readouterr().out)


def test_a_complete_file_is_accepted_and_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, tmp_path, complete())
    assert result["problems"] == [] and result["passed"] is True and result["changed"] is False
    assert sorted(result["signoffs"]) == sorted(ROLES)
    assert result["signoffs"]["security_officer"] == {"name": "Grace Hopper", "date": day(1), "reference": "CHG-101",
                                                      "sha256": SHA, "source": "file"}
    assert result["attestations"]["pen-test"]["gate_role"] == "security_officer"
    assert result["attestations"]["load-test"]["text"] == "Load testing completed"
    assert result["waivers"] == {"pci": {"by": "Lex Luthor", "date": day(40), "justification": JUSTIFICATION,
                                         "text": "PCI DSS compliance verified"}}
    assert result["gate_lines"] == ["pen-test", "load-test", "pci"] and result["lines_checked"] is True
    assert result["signoff_file_sha256"] == hashlib.sha256((tmp_path / "signoffs.yml").read_bytes()).hexdigest()
    assert result["checklist_map_sha256"] == hashlib.sha256((tmp_path / "map.yml").read_bytes()).hexdigest()


def test_unquoted_yaml_dates_and_times_with_offsets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = yaml.safe_dump(complete(), sort_keys=False).replace(f"'{day(1)}'", day(1))
    moment = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=5)).astimezone(
        datetime.timezone(datetime.timedelta(hours=2))).replace(microsecond=0)
    document = document.replace(f"'{day(2)}'", moment.isoformat(), 1)
    assert "date: " + day(1) in document
    result = run(capsys, tmp_path, document)
    assert result["problems"] == []
    assert result["attestations"]["load-test"]["date"] == moment.isoformat()


def changed(path: str, value: t.Any) -> dict[str, t.Any]:
    """The complete document with one entry (a dotted path) set to value, or removed when value is None."""
    document = complete()
    *parents, last = path.split(".")
    target = document
    for key in parents:
        target = target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return document


@pytest.mark.parametrize(("document", "reason"), [
    (changed("signoffs.security_officer", None), "the security_officer has not signed off"),
    (changed("signoffs.business_owner.sha256", OTHER_SHA),
     f"the business_owner sign-off approves another artifact (sha256 {OTHER_SHA[:12]}..., this deploy is {SHA[:12]}...)"),
    (changed("signoffs.business_owner.sha256", "1234"), "the business_owner sign-off has a sha256 that is not 64 hex"),
    (changed("signoffs.development_lead.sha256", None), "the development_lead sign-off names no artifact"),
    (changed("signoffs.development_lead.date", day(20)),
     f"the development_lead sign-off is dated {day(20)}, 20 days ago, older than the 14 days allowed"),
    (changed("signoffs.development_lead.date", day(-3)), f"the development_lead sign-off is dated {day(-3)}, in the future"),
    (changed("signoffs.development_lead.date", "27/11/2026"), "the development_lead sign-off has a date that is not ISO 8601"),
    (changed("signoffs.development_lead.date", None), "the development_lead sign-off has no date"),
    (changed("signoffs.operations_manager.name", "  "), "the operations_manager sign-off has no name"),
    (changed("signoffs.operations_manager.name", "_________________"), "the operations_manager sign-off has no name"),
    (changed("signoffs.operations_manager.reference", "TBD"), "the operations_manager sign-off has no reference"),
    (changed("signoffs.operations_manager.sha265", SHA), "the operations_manager sign-off has an unknown key 'sha265'"),
    (changed("signoffs.security_oficer", {"name": "x"}), "a sign-off for an unknown role 'security_oficer'"),
    (changed("signoffs.business_owner.name", "ada lovelace"),
     "one person signed as development_lead and business_owner: each role needs its own signer"),
    (changed("signoffs.business_owner", "Lex, yesterday"), "the business_owner sign-off must be a mapping"),
    (changed("waivers.pci.justification", "n/a"), "the waiver of checklist line pci has no justification"),
    (changed("waivers.pci.justification", "None"), "the waiver of checklist line pci has no justification"),
    (changed("waivers.pci.justification", "not needed"),
     "the waiver of checklist line pci has a justification of 10 characters: say why the item does not apply (at least 20)"),
    (changed("waivers.pci.by", ""), "the waiver of checklist line pci does not say who gives it (by)"),
    (changed("waivers.pci", None), "checklist line pci (PCI DSS compliance verified) is a manual gate with no attestation and no waiver"),
    (changed("attestations.pen-test", None),
     "checklist line pen-test (Penetration test passed) is a manual gate with no attestation (by the security_officer) and no waiver"),
    (changed("attestations.pen-tset", {"by": "Grace Hopper", "date": day(1), "reference": "PT-1"}),
     "the attestation of checklist line pen-tset: no line of the checklist map has this id (a typo?)"),
    (changed("waivers.pen-test", {"by": "Grace Hopper", "date": day(1), "justification": JUSTIFICATION}),
     "checklist line pen-test is both attested and waived: keep one"),
    (changed("attestations.load-test.date", day(30)), f"the attestation of checklist line load-test is dated {day(30)}, 30 days ago"),
    (changed("attestations.load-test.reference", "-"), "the attestation of checklist line load-test has no reference"),
    (changed("extra", {"a": 1}), "the sign-off file has an unknown top-level key 'extra'"),
])
def test_each_refusal_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, t.Any], reason: str) -> None:
    result = run(capsys, tmp_path, document)
    assert result["passed"] is False and result["changed"] is False
    assert len(result["problems"]) == 1, result["problems"]
    assert result["problems"][0].startswith(reason), result["problems"]


def test_every_reason_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = complete()
    del document["signoffs"]["security_officer"]
    document["signoffs"]["business_owner"]["sha256"] = OTHER_SHA
    document["waivers"]["pci"]["justification"] = "tbd"
    result = run(capsys, tmp_path, document)
    assert [p.split(" ")[1] for p in result["problems"]] == ["security_officer", "business_owner", "waiver"]
    assert sorted(result["signoffs"]) == ["development_lead", "operations_manager"]
    assert result["waivers"] == {}


@pytest.mark.parametrize(("content", "reason"), [
    (None, "the sign-off file {path} does not exist"),
    ("signoffs: [unclosed\n", "the sign-off file {path} is not valid YAML (line 2)"),
    ("- a list\n", "the sign-off file {path} must be a mapping with signoffs, attestations, waivers"),
])
def test_unusable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, reason: str) -> None:
    path = tmp_path / "signoffs.yml"
    if content is not None:
        path.write_text(content)
    result = run(capsys, tmp_path, signoff_file=str(path))
    assert result["problems"][0] == reason.format(path=path)
    assert "the development_lead has not signed off" in result["problems"]


def test_nothing_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, tmp_path)
    assert result["problems"][0] == "no sign-offs were given (neither a sign-off file nor sign-off variables)"
    assert len(result["problems"]) == 1 + len(ROLES) + 3  # each role, each uncovered gate line


def test_a_missing_or_broken_map_fails_closed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, tmp_path, complete(), checklist_map=str(tmp_path / "nowhere.yml"))
    assert result["problems"] == [f"the checklist map {tmp_path / 'nowhere.yml'} does not exist: the manual gates of "
                                  "the checklist cannot be checked"]
    assert result["lines_checked"] is False
    broken = write(tmp_path, {"lines": [{"id": "a"}, {"id": "a"}]}, "broken.yml")
    result = run(capsys, tmp_path, complete(), checklist_map=str(broken))
    assert result["problems"] == ["the checklist map has the id 'a' twice: the manual gates of the checklist cannot be checked"]


def test_without_a_map_only_signoffs_are_judged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, tmp_path, {"signoffs": complete()["signoffs"]}, checklist_map=None)
    assert result["passed"] is True and result["lines_checked"] is False and result["gate_lines"] == []


def test_variables_replace_the_file_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = changed("signoffs.business_owner.sha256", OTHER_SHA)
    approval = {"business_owner": {"name": "Lex Luthor", "date": day(0), "reference": "AWX-APPROVAL-9", "sha256": SHA}}
    waiver = {"pci": {"by": "Lex Luthor", "date": day(0), "justification": "Out of scope: Stripe Checkout hosts every card form."}}
    result = run(capsys, tmp_path, document, signoffs=approval, waivers=waiver)
    assert result["problems"] == []
    assert result["signoffs"]["business_owner"]["source"] == "variables"
    assert result["signoffs"]["business_owner"]["reference"] == "AWX-APPROVAL-9"
    assert result["signoffs"]["development_lead"]["source"] == "file"
    assert result["waivers"]["pci"]["justification"].startswith("Out of scope")


def test_variables_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = complete()
    result = run(capsys, tmp_path, signoffs=document["signoffs"], attestations=document["attestations"],
                 waivers=document["waivers"])
    assert result["passed"] is True and result["signoff_file"] is None and result["signoff_file_sha256"] is None


def test_roles_and_age_are_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = changed("signoffs.development_lead.date", day(20))
    result = run(capsys, tmp_path, document, max_age_days=30, required_roles=list(ROLES[:3]), distinct_signers=False)
    assert result["problems"] == ["a sign-off for an unknown role 'business_owner' (the roles are development_lead, "
                                  "security_officer, operations_manager)"]


@pytest.mark.parametrize(("args", "message"), [
    ({"release_sha256": "abc"}, "release_sha256 must be 64 hex characters"),
    ({"max_age_days": 0}, "max_age_days must be above 0"),
    ({"required_roles": []}, "required_roles must name at least one role"),
    ({"min_justification_length": 0}, "min_justification_length must be from 1 to 1000"),
])
def test_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], message: str) -> None:
    result = run(capsys, tmp_path, complete(), **args)
    assert result["failed"] is True and message in result["msg"]


def test_check_mode_judges_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = changed("signoffs.business_owner.sha256", OTHER_SHA)
    normal = run(capsys, tmp_path, document)
    checked = run(capsys, tmp_path, document, _ansible_check_mode=True)
    assert checked["problems"] == normal["problems"] and len(checked["problems"]) == 1 and checked["changed"] is False


def automated_map() -> dict[str, t.Any]:
    """MAP, with the load test checked by the run where the inventory sets load_test_url."""
    document = json.loads(json.dumps(MAP))
    line = next(item for item in document["lines"] if item["id"] == "load-test")
    line["gate"]["automated_by"] = {"variable": "load_test_url", "module": "payments.deploy.load_test", "check": "rate"}
    return document


def test_an_automated_gate_needs_no_attestation_and_is_reported(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    document = complete()
    del document["attestations"]["load-test"]
    checklist = str(write(tmp_path, automated_map(), "automated-map.yml"))
    refused = run(capsys, tmp_path, document, checklist_map=checklist)
    assert refused["passed"] is False and any("load-test" in problem for problem in refused["problems"])
    result = run(capsys, tmp_path, document, checklist_map=checklist, automated_lines=["load-test"])
    assert result["passed"] is True, result["problems"]
    assert result["automated_lines"] == ["load-test"] and "load-test" not in result["attestations"]


@pytest.mark.parametrize(("line", "expected"), [
    ("pen-test", "automated line pen-test: the checklist map names no check that the run makes for it"),
    ("backup", "automated line backup: the checklist map names no check that the run makes for it"),
    ("load-tset", "automated line load-tset: no line of the checklist map has this id (a typo?)"),
])
def test_only_a_gate_whose_check_the_map_names_can_be_automated(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, line: str, expected: str) -> None:
    checklist = str(write(tmp_path, automated_map(), "automated-map.yml"))
    result = run(capsys, tmp_path, complete(), checklist_map=checklist, automated_lines=[line])
    assert result["passed"] is False and result["automated_lines"] == []
    assert any(problem.startswith(expected) for problem in result["problems"]), result["problems"]
    # a pen test not attested still fails as a manual gate, automated_lines cannot excuse it
    if line == "pen-test":
        document = complete()
        del document["attestations"]["pen-test"]
        again = run(capsys, tmp_path, document, checklist_map=checklist, automated_lines=[line])
        assert any("pen-test" in problem and "manual gate" in problem for problem in again["problems"])

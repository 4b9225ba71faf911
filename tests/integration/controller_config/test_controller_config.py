"""The AWX / Automation Controller configuration in controller/ (infra.aap_configuration's format), checked without a
controller: every job template runs a playbook of the project and asks only for inputs that playbook accepts, with their
types, choices, required flags and defaults; the credential type injects every secret the inventories read; the release
workflow runs staging deploy, smoke test, sign-off and production deploy in that order, rolls a failed production
deploy back and reports every failure; every name one object gives another is defined. The expectations come from the
playbooks, the roles' argument specs and the example inventories (controller_model). Each check is also run on a mutated
copy of the configuration, which it must refuse."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

import controller_model as model

ROOT = model.ROOT
LOADER = ROOT / "controller" / "load.yml"


@pytest.fixture(name="config")
def config_fixture() -> dict[str, Any]:
    return model.controller_config()


@pytest.fixture(name="environments")
def environments_fixture() -> set[str]:
    return set(model.example_environments())


def template(config: dict[str, Any], name: str) -> dict[str, Any]:
    return model.by_name(config["controller_templates"])[name]


def release_workflow(config: dict[str, Any]) -> dict[str, Any]:
    return model.by_name(config["controller_workflows"])["Payments release"]


def node(workflow: dict[str, Any], identifier: str) -> dict[str, Any]:
    return next(item for item in workflow["simplified_workflow_nodes"] if item["identifier"] == identifier)


def question(job_template: dict[str, Any], variable: str) -> dict[str, Any]:
    return next(item for item in job_template["survey_spec"]["spec"] if item["variable"] == variable)


def workflow_check(config: dict[str, Any], environments: set[str]) -> list[str]:
    return model.workflow_problems(release_workflow(config), config, environments)


# --- the derivation the checks rely on ------------------------------------------------------------------------------


def test_the_inputs_are_derived_from_the_playbooks_and_the_argument_specs() -> None:
    """What the playbooks' usage lines and the roles' argument specs say, as the model reads it."""
    deploy = model.playbook_inputs(ROOT / "playbooks" / "deploy.yml")
    assert deploy["release_version"].required and deploy["release_version"].type == "str"
    assert deploy["deploy_environment"].environment and deploy["deploy_environment"].defaults == ["production"]
    assert not deploy["staging_gate_override"].required
    assert "smoke_test_target" not in deploy  # deploy.yml sets it for the smoke test role
    promote = model.playbook_inputs(ROOT / "playbooks" / "promote.yml")
    assert "release_version" in promote and "deploy_environment" not in promote  # its imports fix the environment
    unlock = model.playbook_inputs(ROOT / "playbooks" / "unlock.yml")
    assert unlock["deploy_environment"].required and unlock["reason"].required and unlock["reason"].type == "str"
    smoke = model.playbook_inputs(ROOT / "playbooks" / "smoke_test.yml")
    assert smoke["smoke_test_target"].choices == ["frontend", "colour"] and "smoke_test_environment" not in smoke
    restore = model.playbook_inputs(ROOT / "playbooks" / "restore.yml")
    assert restore["restore_backup_created"].type == "float" and not restore["restore_backup_created"].required
    assert set(model.example_environments()) == {"production", "staging"}


def test_the_configuration_is_what_infra_aap_configuration_reads(config: dict[str, Any]) -> None:
    assert model.reference_problems(config) == []
    assert {"controller_templates", "controller_workflows", "controller_credential_types"} <= set(config)


def test_the_loader_reads_the_configuration_directory_and_checks_every_secret_the_credentials_take(config: dict[str, Any]) -> None:
    plays = model.read_yaml(LOADER)
    tasks = plays[0]["tasks"]
    reading = next(task["ansible.builtin.include_vars"] for task in tasks if "ansible.builtin.include_vars" in task)
    assert reading["dir"].endswith("/config") and model.CONFIG_DIR.is_dir()
    assert any(task.get("ansible.builtin.include_role", {}).get("name") == "infra.aap_configuration.dispatch" for task in tasks)
    text = LOADER.read_text()
    taken = set(re.findall(r"payments_controller_secrets\.\w+\.(\w+)", str(config["controller_credentials"])))
    assert taken == {"vault", "ssh_private_key", "aws_access_key_id", "aws_secret_access_key"}
    assert all(key in text for key in taken - {"vault"}), "load.yml must check every secret a credential takes"
    environments = {env for credential in config["controller_credentials"] for env in model.credential_environment(credential)}
    assert environments == set(config["payments_controller_environments"]) == set(model.example_environments())


def test_the_execution_environment_carries_this_version_of_the_collection(config: dict[str, Any]) -> None:
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    images = [item["image"] for item in config["controller_execution_environments"]]
    assert images and all(image.endswith(f":{version}") for image in images), (images, version)


# --- job templates --------------------------------------------------------------------------------------------------


def test_every_job_template_runs_a_playbook_of_the_project(config: dict[str, Any]) -> None:
    missing = [(item["name"], item.get("playbook")) for item in config["controller_templates"]
               if not item.get("playbook") or not (ROOT / item["playbook"]).is_file()]
    assert not missing


def test_every_playbook_has_a_job_template_or_a_reason_not_to(config: dict[str, Any]) -> None:
    templated = {item["playbook"] for item in config["controller_templates"]}
    left_out = config["payments_controller_playbooks_without_template"]
    playbooks = {f"playbooks/{path.name}" for path in (ROOT / "playbooks").glob("*.yml")}
    assert playbooks - templated - set(left_out) == set()
    assert set(left_out) & templated == set() and set(left_out) <= playbooks
    assert all(isinstance(reason, str) and reason.strip() for reason in left_out.values())


@pytest.mark.parametrize("name", [item["name"] for item in model.controller_config()["controller_templates"]])
def test_the_survey_asks_only_for_what_the_playbook_accepts(config: dict[str, Any], environments: set[str], name: str) -> None:
    assert model.template_problems(template(config, name), environments) == []


def test_job_templates_ask_for_the_environment_s_inventory_and_credentials(config: dict[str, Any]) -> None:
    for item in config["controller_templates"]:
        assert item["ask_inventory_on_launch"] and item["ask_credential_on_launch"], item["name"]
        assert not item.get("inventory") and not item.get("credentials"), f"{item['name']} must not default to an environment"


# --- the credential type --------------------------------------------------------------------------------------------


def payments_secrets_type(config: dict[str, Any]) -> dict[str, Any]:
    return model.by_name(config["controller_credential_types"])["Payments secrets"]


def test_the_credential_type_injects_every_secret_the_inventories_read(config: dict[str, Any]) -> None:
    assert model.credential_type_problems(payments_secrets_type(config), model.inventory_secrets(), set(model.env_keys_read())) == []


def test_the_stripe_key_the_encryption_key_and_the_hash_salt_are_injected_as_secrets(config: dict[str, Any]) -> None:
    secrets = model.inventory_secrets()
    fields = {item["id"]: item for item in payments_secrets_type(config)["inputs"]["fields"]}
    injected = payments_secrets_type(config)["injectors"]["extra_vars"]
    for key in ("STRIPE_SECRET_KEY", "ENCRYPTION_KEY", "HASH_SALT"):
        assert key in model.env_keys_read(), f"no playbook or role reads {key}"
        (variable,) = secrets.env_keys[key]
        assert fields[variable]["secret"] is True and variable in injected and variable in fields
        assert variable in payments_secrets_type(config)["inputs"]["required"]


def test_the_ssh_credentials_log_in_as_the_inventories_user(config: dict[str, Any]) -> None:
    machines = [item for item in config["controller_credentials"] if item["credential_type"] == "Machine"]
    for credential in machines:
        (environment,) = model.credential_environment(credential)
        group_vars = model.read_yaml(model.example_environments()[environment] / "group_vars" / "all" / "main.yml")
        assert credential["inputs"]["username"] == group_vars["ansible_user"], credential["name"]
        assert credential["inputs"]["become_method"] == "sudo" and group_vars["ansible_become"] is True
    assert {env for item in machines for env in model.credential_environment(item)} == set(model.example_environments())


# --- the release workflow -------------------------------------------------------------------------------------------


def test_the_release_workflow(config: dict[str, Any], environments: set[str]) -> None:
    assert workflow_check(config, environments) == []


def test_the_rollback_node_rolls_back_only_what_the_failed_deploy_left_serving(config: dict[str, Any]) -> None:
    rollback = template(config, node(release_workflow(config), "production_rollback")["unified_job_template"])
    assert model.imports_rollback(rollback["playbook"])
    guard = model.read_yaml(ROOT / rollback["playbook"])[0]
    assert guard["any_errors_fatal"] is True  # a refusal must stop the run before rollback.yml's plays
    text = (ROOT / rollback["playbook"]).read_text()
    assert "awaiting-decision" in text and "deploy_journal_unfinished" in text
    deploy = (ROOT / "playbooks" / "deploy.yml").read_text()
    assert "'state': 'awaiting-decision'" in deploy, "deploy.yml no longer journals an inconclusive bake that way"


# --- each check refuses a broken copy -------------------------------------------------------------------------------


def mutate_survey(config: dict[str, Any], name: str, variable: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    broken = copy.deepcopy(config)
    change(question(template(broken, name), variable))
    return template(broken, name)


@pytest.mark.parametrize(("name", "variable", "change", "expected"), [
    ("Payments deploy", "release_version", lambda q: q.update(variable="release_versoin"), "is not an input the playbook accepts"),
    ("Payments deploy", "deploy_environment", lambda q: q.update(choices=["production", "prod"]), "which the playbook does not accept"),
    ("Payments deploy", "release_version", lambda q: q.update(required=False), "required by the playbook but optional"),
    ("Payments deploy", "release_version", lambda q: q.update(type="integer"), "for a str input"),
    ("Payments smoke test", "smoke_test_target", lambda q: q.update(choices=["frontend", "colour", "both"]), "does not accept"),
    ("Payments smoke test", "smoke_test_target", lambda q: q.update(type="text", choices=None), "ask with multiplechoice"),
    ("Payments smoke test", "smoke_test_target", lambda q: q.update(default="colour"), "defaults to 'colour' in the survey"),
    ("Payments smoke test", "smoke_test_colour", lambda q: q.update(type="multiplechoice", choices=["blue"]), "accepts any value"),
    ("Payments restore a named backup", "restore_backup_created", lambda q: q.update(type="integer"), "for a float input"),
    ("Payments unlock", "reason", lambda q: q.update(required=False), "required by the playbook but optional"),
    ("Payments rollback", "rollback_reason", lambda q: q.update(min=1), "outside its length limits"),
])
def test_a_survey_that_does_not_match_the_playbook_is_refused(config: dict[str, Any], environments: set[str], name: str, variable: str,
                                                              change: Callable[[dict[str, Any]], None], expected: str) -> None:
    problems = model.template_problems(mutate_survey(config, name, variable, change), environments)
    assert any(expected in problem for problem in problems), problems


def test_a_survey_that_does_not_ask_for_what_the_operator_must_give_is_refused(config: dict[str, Any], environments: set[str]) -> None:
    broken = copy.deepcopy(template(config, "Payments unlock"))
    broken["survey_spec"]["spec"] = [item for item in broken["survey_spec"]["spec"] if item["variable"] != "reason"]
    assert any("needs reason" in problem for problem in model.template_problems(broken, environments))


def test_a_job_template_whose_playbook_is_not_in_the_project_is_refused(config: dict[str, Any], environments: set[str]) -> None:
    broken = copy.deepcopy(template(config, "Payments deploy"))
    broken["playbook"] = "playbooks/deploy_all.yml"
    assert any("is not in the project" in problem for problem in model.template_problems(broken, environments))


@pytest.mark.parametrize(("change", "expected"), [
    (lambda t: t["inputs"]["fields"].pop(next(i for i, f in enumerate(t["inputs"]["fields"]) if f["id"] == "vault_hash_salt")),
     "vault_hash_salt is read by an example inventory but is not a field"),
    (lambda t: next(f for f in t["inputs"]["fields"] if f["id"] == "vault_stripe_secret_key").update(secret=False),
     "vault_stripe_secret_key holds a value that is never shown but is not secret"),
    (lambda t: t["injectors"]["extra_vars"].update(vault_encryption_key="{{ vault_hash_salt }}"),
     "vault_encryption_key is not injected as the extra var"),
    (lambda t: t["inputs"]["required"].remove("vault_encryption_key"), "vault_encryption_key is read by every environment"),
    (lambda t: t["inputs"]["required"].append("vault_probe_payment_method"), "vault_probe_payment_method is required but not"),
    (lambda t: t["inputs"]["fields"].append({"id": "vault_stripe_publishable_key", "type": "string"}), "is not a variable vault.yml.example"),
])
def test_a_credential_type_that_misses_a_secret_is_refused(config: dict[str, Any], change: Callable[[dict[str, Any]], None],
                                                           expected: str) -> None:
    broken = copy.deepcopy(payments_secrets_type(config))
    change(broken)
    problems = model.credential_type_problems(broken, model.inventory_secrets(), set(model.env_keys_read()))
    assert any(expected in problem for problem in problems), problems


def drop(items: list[str], name: str) -> None:
    items.remove(name)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda w: node(w, "production_deploy").update(failure_nodes=[]), "has no failure edge to the rollback"),
    (lambda w: node(w, "production_deploy").update(failure_nodes=["production_rollbak"]), "which is no node"),
    (lambda w: node(w, "staging_smoke_test").update(success_nodes=["production_deploy"]), "can run without 'sign_off'"),
    (lambda w: node(w, "staging_deploy").update(success_nodes=["sign_off"]), "can run without 'staging_smoke_test'"),
    (lambda w: node(w, "sign_off").update(success_nodes=[], failure_nodes=["production_deploy"]), "does not follow 'sign_off' on success"),
    (lambda w: node(w, "staging_deploy").update(unified_job_template="Payments deploy everywhere"), "which is not a job template"),
    (lambda w: node(w, "production_rollback").update(success_nodes=["staging_deploy"]), "is part of a cycle"),
    (lambda w: node(w, "production_deploy")["extra_data"].update(deploy_environment="staging"), "needs exactly one production deploy"),
    (lambda w: node(w, "staging_deploy")["extra_data"].update(deploy_environment="production"), "with 'Payments staging', which serves staging"),
    (lambda w: node(w, "staging_smoke_test")["extra_data"].update(smoke_test_target="both"), "not one of ['frontend', 'colour']"),
    (lambda w: node(w, "staging_smoke_test")["extra_data"].update(smoke_test_payment_count=3), "neither asks in its survey"),
    (lambda w: drop(node(w, "production_deploy")["credentials"], "Payments production SSH"), "exactly one credential of type 'Machine'"),
    (lambda w: node(w, "production_deploy")["credentials"].__setitem__(0, "Payments staging secrets"), "is not production's"),
    (lambda w: node(w, "sign_off")["approval_node"].update(timeout=0), "the sign-off must expire"),
    (lambda w: node(w, "sign_off")["approval_node"].update(timeout=8 * 86400), "the sign-off must expire"),
    (lambda w: w.update(notification_templates_error=[]), "notifies no one on error"),
    (lambda w: w.update(notification_templates_approvals=[]), "no one is notified that it waits"),
    (lambda w: w["survey_spec"]["spec"].append({"variable": "deploy_environment", "type": "multiplechoice", "required": True,
                                                "question_name": "Environment", "choices": ["production"]}), "would override"),
    # As an extra var it would also override what deploy.yml gives the smoke test role.
    (lambda w: w["survey_spec"]["spec"].append({"variable": "smoke_test_target", "type": "multiplechoice", "required": False,
                                                "question_name": "Target", "choices": ["colour"]}), "deploy.yml, which reads it but does not take it"),
])
def test_a_broken_release_workflow_is_refused(config: dict[str, Any], environments: set[str], change: Callable[[dict[str, Any]], None],
                                              expected: str) -> None:
    broken = copy.deepcopy(config)
    change(release_workflow(broken))
    problems = workflow_check(broken, environments)
    assert any(expected in problem for problem in problems), problems


def test_a_handled_failure_that_nobody_hears_of_is_refused(config: dict[str, Any], environments: set[str]) -> None:
    broken = copy.deepcopy(config)
    template(broken, "Payments rollback after a failed deploy")["notification_templates_success"] = []
    assert any("does not notify on success and error" in problem for problem in workflow_check(broken, environments))
    template(broken, "Payments deploy")["notification_templates_error"] = []
    assert any("its template notifies no one on error" in problem for problem in workflow_check(broken, environments))


def test_a_rollback_node_that_does_not_run_rollback_yml_is_refused(config: dict[str, Any], environments: set[str]) -> None:
    broken = copy.deepcopy(config)
    template(broken, "Payments rollback after a failed deploy")["playbook"] = "playbooks/unlock.yml"
    assert any("needs exactly one rollback node" in problem for problem in workflow_check(broken, environments))


@pytest.mark.parametrize(("change", "expected"), [
    (lambda c: c["controller_inventory_sources"][0].update(source_path="inventories/production/hosts.yml"), "is not in the project"),
    (lambda c: c["controller_templates"][0].update(project="Payments"), "project 'Payments' is not defined"),
    (lambda c: c["controller_credentials"][0].update(credential_type="Payments secret"), "type 'Payments secret' is not defined"),
    (lambda c: c.update(controller_job_templates=[]), "controller_job_templates is not a variable infra.aap_configuration reads"),
])
def test_a_dangling_reference_is_refused(config: dict[str, Any], change: Callable[[dict[str, Any]], None], expected: str) -> None:
    broken = copy.deepcopy(config)
    change(broken)
    problems = model.reference_problems(broken)
    assert any(expected in problem for problem in problems), problems


def test_the_configuration_files_are_read_as_ansible_reads_them() -> None:
    unsafe = model.read_yaml(model.CONFIG_DIR / "credential_types.yml")["controller_credential_types"][0]["injectors"]
    assert unsafe["extra_vars"]["vault_hash_salt"] == "{{ vault_hash_salt }}"
    assert all(path.suffix == ".yml" for path in model.CONFIG_DIR.iterdir() if path.is_file())


def test_every_schedule_runs_a_template_with_what_its_survey_asks(config: dict[str, Any]) -> None:
    assert model.schedule_problems(config) == []
    kinds = {schedule["unified_job_template"]: schedule["rrule"] for schedule in config["controller_schedules"]}
    assert {"Payments daily maintenance", "Payments weekly maintenance", "Payments disaster-recovery drill"} <= set(kinds)


def test_a_schedule_of_an_unknown_template_or_an_unasked_variable_is_refused(config: dict[str, Any]) -> None:
    broken = copy.deepcopy(config)
    broken["controller_schedules"][0]["unified_job_template"] = "Payments nightly"
    broken["controller_schedules"][1]["extra_data"] = {"release_version": "1.1.0"}
    broken["controller_schedules"][2]["rrule"] = "every month"
    problems = model.schedule_problems(broken)
    assert any("'Payments nightly' is not defined" in problem for problem in problems)
    assert any("release_version is not asked" in problem for problem in problems)
    assert any("rrule 'every month'" in problem for problem in problems)

"""What the controller configuration (controller/config, in infra.aap_configuration's format) is checked against, and
the checks themselves.

The expectations are derived, not listed: the inputs a playbook accepts come from the playbook (its usage lines, the
variables it reads with a default or tests for, its asserts), the roles it runs (followed through include_role,
import_role, roles:, include_tasks and import_playbook) and their meta/argument_specs.yml; the secrets from the
example inventories, whose vault_* references are what a run reads from vault.yml. Every check returns the problems
it finds (empty: none), so that the tests can also run it on a mutated copy of the configuration and see it fail."""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = ROOT / "controller" / "config"
ROLES_DIR = ROOT / "roles"
EXAMPLE_INVENTORIES = ROOT / "inventories" / "example"

# A survey question's type and the argument spec type of the input it answers.
SURVEY_TYPES = {"text": "str", "textarea": "str", "password": "str", "integer": "int", "float": "float",
                "multiplechoice": "str", "multiselect": "list"}
SPEC_TYPE_ALIASES = {"path": "str", "string": "str", "integer": "int", "boolean": "bool"}
# The variables infra.aap_configuration's dispatch role reads (each names a role it runs), and this project's own data.
DISPATCH_VARIABLES = {"controller_credential_types", "controller_credentials", "controller_execution_environments",
                      "controller_projects", "controller_inventories", "controller_inventory_sources", "controller_templates",
                      "controller_workflows", "controller_notifications", "controller_schedules"}
OWN_VARIABLE_PREFIX = "payments_controller_"
# Credential types the controller ships with, which the configuration may use without defining them.
BUILT_IN_CREDENTIAL_TYPES = {"Machine", "Amazon Web Services", "Source Control", "Vault", "Container Registry"}
INCLUDE_ROLE = {"ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role"}
INCLUDE_TASKS = {"ansible.builtin.include_tasks", "ansible.builtin.import_tasks", "include_tasks", "import_tasks"}
SET_FACT = {"ansible.builtin.set_fact", "set_fact"}
MAGIC_PREFIXES = ("ansible_", "awx_", "tower_")
NAME = r"[a-z_][a-z0-9_]*"
NOT_AN_ATTRIBUTE = r"(?<![\w.\]'\"])"


class AnsibleYamlLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """YAML as Ansible reads it: !unsafe and !vault values are plain strings here."""


AnsibleYamlLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
AnsibleYamlLoader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))


@functools.lru_cache(maxsize=None)
def read_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=AnsibleYamlLoader)


def controller_config() -> dict[str, Any]:
    """Every file of controller/config, as the loader's include_vars reads them into one namespace (a fresh copy)."""
    merged: dict[str, Any] = {}
    for path in sorted(CONFIG_DIR.glob("*.yml")):
        data = read_yaml(path) or {}
        clash = sorted(merged.keys() & data.keys())
        if clash:
            raise ValueError(f"{path.name} defines {clash} again")
        merged.update(data)
    return copy.deepcopy(merged)


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


# --- what a playbook accepts ---------------------------------------------------------------------------------------


@dataclass
class Input:
    """One variable a playbook accepts, as its playbook and the argument specs of the roles it runs describe it."""

    name: str
    type: str | None = None
    choices: list[Any] | None = None
    required: bool = False
    defaults: list[Any] = field(default_factory=list)
    environment: bool = False  # its values are environments (an ENVIRONMENT_app group of the inventory)
    origin: str = ""
    operator: bool = False  # required in the playbook's usage lines: the person who runs it gives it


@dataclass
class RoleRun:
    role: str
    entry: str
    set_here: set[str]  # the variables the caller gives this entry point


@dataclass
class PlaybookWalk:
    """What walking a playbook and everything it runs collects."""

    runs: list[RoleRun] = field(default_factory=list)
    set_names: set[str] = field(default_factory=set)  # play vars, import vars: set by the playbook, not inputs
    removed: set[str] = field(default_factory=set)  # what an import_playbook's vars fix for the imported plays
    texts: list[str] = field(default_factory=list)  # the playbook files, for the variables they read
    role_texts: list[str] = field(default_factory=list)  # the files of the roles run
    asserts: list[str] = field(default_factory=list)
    passed: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # variable -> (role, entry, option)
    visited: set[tuple[str, str]] = field(default_factory=set)


def role_name(name: Any) -> str | None:
    if not isinstance(name, str) or "{{" in name:
        return None
    short = name.removeprefix("payments.deploy.")
    return short if (ROLES_DIR / short).is_dir() else None


@functools.lru_cache(maxsize=None)
def argument_specs(role: str) -> dict[str, Any]:
    path = ROLES_DIR / role / "meta" / "argument_specs.yml"
    return (read_yaml(path) or {}).get("argument_specs", {}) if path.is_file() else {}


def spec_options(role: str, entry: str) -> dict[str, dict[str, Any]]:
    return (argument_specs(role).get(entry) or {}).get("options") or {}


@functools.lru_cache(maxsize=None)
def every_spec_option() -> dict[str, dict[str, Any]]:
    """Each option name of any role's argument spec, first found (a name means the same across the collection)."""
    found: dict[str, dict[str, Any]] = {}
    for spec_path in sorted(ROLES_DIR.glob("*/meta/argument_specs.yml")):
        for entry in argument_specs(spec_path.parent.parent.name).values():
            for name, option in ((entry or {}).get("options") or {}).items():
                found.setdefault(name, option)
    return found


def task_module(task: dict[str, Any], modules: set[str]) -> tuple[str, Any] | None:
    for key in modules:
        if key in task:
            return key, task[key]
    return None


def walk_tasks(tasks: Any, walk: PlaybookWalk, tasks_dir: Path | None) -> None:
    """Follow include_role/import_role (and, inside a role, include_tasks/import_tasks) through a list of tasks."""
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        for section in ("block", "rescue", "always"):
            walk_tasks(task.get(section), walk, tasks_dir)
        included = task_module(task, INCLUDE_ROLE)
        if included and isinstance(included[1], dict):
            role = role_name(included[1].get("name"))
            if role:
                entry = str(included[1].get("tasks_from") or "main").removesuffix(".yml")
                given = dict(task.get("vars") or {})
                walk_role(role, entry, given, walk)
        included = task_module(task, INCLUDE_TASKS)
        if included and tasks_dir is not None:
            target = included[1].get("file") if isinstance(included[1], dict) else included[1]
            if isinstance(target, str) and "{{" not in target and (tasks_dir / target).is_file():
                walk_tasks(read_yaml(tasks_dir / target), walk, tasks_dir)


def walk_role(role: str, entry: str, given: dict[str, Any], walk: PlaybookWalk) -> None:
    walk.runs.append(RoleRun(role, entry, set(given)))
    for option, value in given.items():
        match = re.fullmatch(r"\{\{\s*(" + NAME + r")\s*\}\}", value) if isinstance(value, str) else None
        if match:
            walk.passed.setdefault(match.group(1), []).append((role, entry, option))
    if (role, "") not in walk.visited:  # what a role mentions anywhere (any entry point, its templates) counts as read
        walk.visited.add((role, ""))
        for part in ("tasks", "handlers", "vars", "defaults", "templates"):
            walk.role_texts += [path.read_text() for path in sorted((ROLES_DIR / role / part).rglob("*")) if path.is_file()]
    if (role, entry) in walk.visited:
        return
    walk.visited.add((role, entry))
    tasks_dir = ROLES_DIR / role / "tasks"
    tasks_file = tasks_dir / f"{entry}.yml"
    if tasks_file.is_file():
        walk_tasks(read_yaml(tasks_file), walk, tasks_dir)


def resolve_import(target: str, importer: Path) -> Path:
    if target.startswith("payments.deploy."):
        return ROOT / "playbooks" / (target.removeprefix("payments.deploy.") + ".yml")
    return (importer.parent / target).resolve()


def walk_playbook(path: Path, walk: PlaybookWalk) -> None:
    walk.texts.append(path.read_text())
    for play in read_yaml(path) or []:
        imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if imported:
            fixed = set(play.get("vars") or {})
            inner = PlaybookWalk(visited=walk.visited)
            walk_playbook(resolve_import(imported, path), inner)
            walk.runs += [RoleRun(run.role, run.entry, run.set_here | fixed) for run in inner.runs]
            walk.set_names |= inner.set_names
            walk.removed |= inner.removed | fixed
            walk.texts += inner.texts
            walk.role_texts += inner.role_texts
            walk.asserts += inner.asserts
            for name, targets in inner.passed.items():
                walk.passed.setdefault(name, []).extend(targets)
            continue
        walk.set_names |= set(play.get("vars") or {})
        for entry in play.get("roles") or []:
            entry = {"role": entry} if isinstance(entry, str) else entry
            role = role_name(entry.get("role") or entry.get("name"))
            if role:
                walk_role(role, "main", dict(entry.get("vars") or {}), walk)
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            walk_tasks(play.get(section), walk, None)
            collect_asserts(play.get(section), walk.asserts)


def collect_asserts(tasks: Any, found: list[str]) -> None:
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        for section in ("block", "rescue", "always"):
            collect_asserts(task.get(section), found)
        module = task.get("ansible.builtin.assert") or task.get("assert")
        if isinstance(module, dict):
            that = module.get("that")
            found += [that] if isinstance(that, str) else list(that or [])


@functools.lru_cache(maxsize=None)
def internal_names() -> frozenset[str]:
    """Variables the collection sets itself (facts, registered results, role vars, task vars): never inputs."""
    names: set[str] = set()
    files = [*ROLES_DIR.glob("*/tasks/*.yml"), *ROLES_DIR.glob("*/handlers/*.yml"), *(ROOT / "playbooks").glob("*.yml"),
             *(ROOT / "controller").glob("*.yml")]
    for path in files:
        collect_set_names(read_yaml(path), names)
    for path in ROLES_DIR.glob("*/vars/main.yml"):
        names |= set(read_yaml(path) or {})
    return frozenset(names)


def collect_set_names(node: Any, names: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            collect_set_names(item, names)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("register"), str):
        names.add(node["register"])
    facts = task_module(node, SET_FACT)
    if facts and isinstance(facts[1], dict):
        names |= {key for key in facts[1] if key != "cacheable"}
    loop_var = (node.get("loop_control") or {}).get("loop_var") if isinstance(node.get("loop_control"), dict) else None
    if loop_var:
        names.add(loop_var)
    if "hosts" in node or not (task_module(node, INCLUDE_ROLE) or "ansible.builtin.import_playbook" in node or "import_playbook" in node):
        names |= set(node.get("vars") or {})  # play vars and a plain task's vars; an include's vars are its target's inputs
    for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
        collect_set_names(node.get(key), names)


def usage_lines(path: Path) -> list[str]:
    """The header's `ansible-playbook <this playbook> ...` lines (by FQCN, payments.deploy.<name>, or by path): the
    documented way to call it."""
    lines = []
    for line in path.read_text().splitlines():
        if line == "---":
            continue
        if not line.startswith("#"):
            break
        called = r"(?:\S*" + re.escape(path.name) + r"|payments\.deploy\." + re.escape(path.stem) + r")"
        match = re.match(r"#\s+ansible-playbook\s+" + called + r"(?P<rest>(?:\s.*)?)$", line)
        if match:
            lines.append(match.group("rest"))
    return lines


def usage_names(line: str) -> tuple[set[str], set[str]]:
    """The -e names of one usage line: those outside [...] (required) and those inside (optional)."""
    required, optional, depth = set(), set(), 0
    for token in re.finditer(r"\[|\]|-e\s+'?(" + NAME + r")=", line):
        if token.group(0) == "[":
            depth += 1
        elif token.group(0) == "]":
            depth -= 1
        else:
            (optional if depth else required).add(token.group(1))
    return required, optional


def literal(text: str) -> tuple[bool, Any]:
    """A default(...) argument that is a literal, as (True, value); (False, None) for an expression."""
    text = text.strip()
    if re.fullmatch(r"'[^']*'|\"[^\"]*\"", text):
        return True, text[1:-1]
    if text in ("true", "false", "True", "False"):
        return True, text.lower() == "true"
    if re.fullmatch(r"-?\d+", text):
        return True, int(text)
    if re.fullmatch(r"-?\d+\.\d*", text):
        return True, float(text)
    if text in ("[]", "{}"):
        return True, [] if text == "[]" else {}
    return False, None


def unique(values: list[Any]) -> list[Any]:
    kept: list[Any] = []
    for value in values:
        if value not in kept:
            kept.append(value)
    return kept


def literal_type(value: Any) -> str | None:
    for python_type, kind in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "list"), (dict, "dict")):
        if isinstance(value, python_type):
            return kind
    return None


def spec_type(option: dict[str, Any]) -> str:
    kind = str(option.get("type", "str"))
    return SPEC_TYPE_ALIASES.get(kind, kind)


def is_environment(option: dict[str, Any] | None) -> bool:
    description = (option or {}).get("description", "")
    return "ENVIRONMENT_app" in str(description)


@functools.lru_cache(maxsize=None)
def playbook_walk(path: Path) -> PlaybookWalk:
    walk = PlaybookWalk()
    walk_playbook(path, walk)
    return walk


@functools.lru_cache(maxsize=None)
def playbook_inputs_cached(path: Path) -> dict[str, Input]:
    walk = playbook_walk(path)
    inputs: dict[str, Input] = {}
    ran: dict[str, dict[str, Any]] = {}  # every option of the entry points run, set by the caller or not (for types)
    for run in walk.runs:
        for name, option in spec_options(run.role, run.entry).items():
            ran.setdefault(name, option)
            if name in run.set_here or name in walk.set_names or name in walk.removed or name in inputs:
                continue
            inputs[name] = Input(name, spec_type(option), option.get("choices"), bool(option.get("required")),
                                 [option["default"]] if "default" in option else [], is_environment(option),
                                 f"{run.role} role, {run.entry} entry point")

    # What the playbooks read themselves: with a default, tested for being defined, or named in a usage line.
    read: dict[str, list[Any]] = {}
    for text in walk.texts:
        for match in re.finditer(NOT_AN_ATTRIBUTE + "(" + NAME + r")\s*\|\s*default\(([^,)]*)", text):
            if text[:match.start()].rstrip().endswith("|"):
                continue  # a filter (`| first | default(...)`), not a variable
            is_literal, value = literal(match.group(2))
            read.setdefault(match.group(1), []).extend([value] if is_literal else [])
        for match in re.finditer(NOT_AN_ATTRIBUTE + "(" + NAME + r") is (?:not )?defined", text):
            read.setdefault(match.group(1), [])
    required_by_usage: set[str] | None = None
    for line in usage_lines(path):
        required, optional = usage_names(line)
        for name in required | optional:
            read.setdefault(name, [])
        required_by_usage = required if required_by_usage is None else required_by_usage & required
    internal = internal_names() | walk.set_names | walk.removed
    asserted_strings = {m.group(1) for that in walk.asserts for m in re.finditer("(" + NAME + r") is string", that)}
    for name, defaults in read.items():
        if name in internal or name.startswith(MAGIC_PREFIXES):
            continue
        option = ran.get(name) or every_spec_option().get(name)  # what the name means in the collection
        found = inputs.get(name)
        if found is None:
            kind = spec_type(option) if option else None
            if kind is None and walk.passed.get(name):
                role, entry, target = walk.passed[name][0]
                kind = spec_type(spec_options(role, entry).get(target, {}))
            if kind is None and name in asserted_strings:
                kind = "str"
            if kind is None and defaults:
                kind = literal_type(defaults[0])
            spec_default = [ran[name]["default"]] if name in ran and "default" in ran[name] else []  # only of a role it runs
            found = inputs[name] = Input(name, kind, (option or {}).get("choices"), False,
                                         spec_default or unique(defaults), is_environment(option), "the playbook")
    for name in required_by_usage or set():
        if name in inputs:
            inputs[name].required = inputs[name].operator = True
    return inputs


def playbook_inputs(path: Path) -> dict[str, Input]:
    return copy.deepcopy(playbook_inputs_cached(path.resolve()))


@functools.lru_cache(maxsize=None)
def playbook_reads(path: Path) -> frozenset[str]:
    """Every name a playbook and the roles it runs mention: a variable none of them mentions changes nothing there."""
    walk = playbook_walk(path.resolve())
    return frozenset(re.findall(NAME, "\n".join(walk.texts + walk.role_texts)))


# --- environments, inventories, secrets -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def example_environments() -> dict[str, Path]:
    """Each example inventory's environment (its ENVIRONMENT_app group) and its directory."""
    found = {}
    for hosts in sorted(EXAMPLE_INVENTORIES.glob("*/hosts.yml")):
        groups = read_yaml(hosts)["all"]["children"]
        for group in groups:
            if group.endswith("_app"):
                found[group.removesuffix("_app")] = hosts.parent
    return found


def inventory_environment(source_path: str) -> str | None:
    """The environment an inventory file in the project serves: its group_vars' deploy_environment."""
    path = ROOT / source_path
    group_vars = path.parent / "group_vars" / "all" / "main.yml"
    if not path.is_file() or not group_vars.is_file():
        return None
    return (read_yaml(group_vars) or {}).get("deploy_environment")


def vault_references(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(vault_references(value) for value in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(vault_references(value) for value in node)) if node else set()
    return set(re.findall(r"\bvault_[a-z0-9_]+\b", node)) if isinstance(node, str) else set()


@dataclass
class Secrets:
    """What the example inventories read from vault.yml."""

    per_environment: dict[str, set[str]]  # every vault_* variable each inventory refers to
    documented: set[str]  # the variables vault.yml.example lists
    env_keys: dict[str, set[str]]  # payments_env key -> the vault_* variables its value refers to
    never_shown: set[str]  # vault_* variables behind a payments_env value or a no_log / "never shown" role option

    @property
    def needed(self) -> set[str]:
        return set().union(*self.per_environment.values())

    @property
    def everywhere(self) -> set[str]:
        return set.intersection(*self.per_environment.values())


@functools.lru_cache(maxsize=None)
def inventory_secrets() -> Secrets:
    per_environment, documented, env_keys, never_shown = {}, set(), {}, set()
    options = every_spec_option()
    for environment, directory in example_environments().items():
        group_vars = read_yaml(directory / "group_vars" / "all" / "main.yml") or {}
        per_environment[environment] = vault_references(group_vars)
        documented |= set(read_yaml(directory / "group_vars" / "all" / "vault.yml.example") or {})
        for key, value in (group_vars.get("payments_env") or {}).items():
            env_keys.setdefault(key, set()).update(vault_references(value))
            never_shown |= vault_references(value)
        for name, value in group_vars.items():
            option = options.get(name) or {}
            if option.get("no_log") or "never shown" in str(option.get("description", "")):
                never_shown |= vault_references(value)
    return Secrets(per_environment, documented, env_keys, never_shown)


@functools.lru_cache(maxsize=None)
def env_keys_read() -> frozenset[str]:
    """The payments_env keys the playbooks and roles read or preflight requires."""
    keys = set((read_yaml(ROLES_DIR / "preflight" / "defaults" / "main.yml") or {}).get("preflight_required_env") or [])
    for path in [*ROLES_DIR.rglob("*.yml"), *(ROOT / "playbooks").glob("*.yml")]:
        keys |= set(re.findall(r"payments_env\.([A-Z_]+)", path.read_text()))
    return frozenset(keys)


def staging_evidence_max_age_seconds() -> float:
    defaults = read_yaml(ROLES_DIR / "preflight" / "defaults" / "main.yml") or {}
    return float(defaults["preflight_staging_gate_max_age_days"]) * 86400


# --- checks ---------------------------------------------------------------------------------------------------------


def question_problems(where: str, question: dict[str, Any], inputs: dict[str, Input], environments: set[str]) -> list[str]:
    """One survey question against the input it answers."""
    problems = []
    variable, kind = question.get("variable"), question.get("type")
    wanted = inputs.get(variable)
    if wanted is None:
        return [f"{where}: {variable} is not an input the playbook accepts"]
    if kind not in SURVEY_TYPES:
        return [f"{where}: {variable} has the unknown survey type {kind}"]
    if wanted.type is None:
        problems.append(f"{where}: the type of {variable} cannot be derived from the playbook or an argument spec")
    elif SURVEY_TYPES[kind] != wanted.type:
        problems.append(f"{where}: {variable} is a {kind} question ({SURVEY_TYPES[kind]}) for a {wanted.type} input ({wanted.origin})")
    allowed = wanted.choices or (sorted(environments) if wanted.environment else None)
    if kind in ("multiplechoice", "multiselect"):
        choices = question.get("choices")
        if not isinstance(choices, list) or not choices:
            problems.append(f"{where}: {variable} has no list of choices")
        elif allowed is None:
            problems.append(f"{where}: {variable} offers choices, but the playbook accepts any value: ask with text")
        else:
            wrong = [choice for choice in choices if choice not in allowed]
            if wrong:
                problems.append(f"{where}: {variable} offers {wrong}, which the playbook does not accept (it accepts {allowed})")
    elif wanted.choices:
        problems.append(f"{where}: {variable} accepts only {wanted.choices}: ask with multiplechoice")
    if wanted.required and not question.get("required"):
        problems.append(f"{where}: {variable} is required by the playbook but optional in the survey")
    if "default" in question:
        default = question["default"]
        if wanted.defaults and default not in wanted.defaults:
            problems.append(f"{where}: {variable} defaults to {default!r} in the survey, {wanted.defaults} in the playbook")
        if kind == "multiplechoice" and default not in (question.get("choices") or []):
            problems.append(f"{where}: the default {default!r} of {variable} is not one of its choices")
        if kind in ("text", "textarea", "password") and not question.get("min", 0) <= len(str(default)) <= question.get("max", 1024):
            problems.append(f"{where}: the default of {variable} is outside its length limits, so the controller drops it")
    return problems


def survey_problems(where: str, survey: dict[str, Any], inputs: dict[str, Input], environments: set[str]) -> list[str]:
    questions = (survey or {}).get("spec") or []
    variables = [question.get("variable") for question in questions]
    problems = [f"{where}: {name} is asked twice" for name in sorted({v for v in variables if variables.count(v) > 1})]
    for question in questions:
        problems += question_problems(where, question, inputs, environments)
    return problems


def template_problems(template: dict[str, Any], environments: set[str]) -> list[str]:
    """A job template: its playbook exists in the project and its survey asks only for what the playbook accepts."""
    where = f"job template {template['name']!r}"
    playbook = ROOT / template.get("playbook", "")
    if not template.get("playbook") or not playbook.is_file():
        return [f"{where}: playbook {template.get('playbook')!r} is not in the project"]
    problems = []
    if template.get("survey_spec") and not template.get("survey_enabled"):
        problems.append(f"{where}: has a survey that is not enabled")
    inputs = playbook_inputs(playbook)
    problems += survey_problems(where, template.get("survey_spec"), inputs, environments)
    asked = {question.get("variable") for question in (template.get("survey_spec") or {}).get("spec") or []}
    for name in sorted(name for name, wanted in inputs.items() if wanted.operator and name not in asked):
        problems.append(f"{where}: the playbook needs {name} from whoever runs it, and the survey does not ask for it")
    return problems


def credential_type_problems(credential_type: dict[str, Any], secrets: Secrets, env_keys: set[str]) -> list[str]:
    """The custom credential type against what the example inventories read from vault.yml."""
    problems = []
    fields = {item["id"]: item for item in credential_type.get("inputs", {}).get("fields", [])}
    required = set(credential_type.get("inputs", {}).get("required") or [])
    injected = (credential_type.get("injectors") or {}).get("extra_vars") or {}
    for name in sorted(secrets.needed - set(fields)):
        problems.append(f"{name} is read by an example inventory but is not a field of {credential_type['name']!r}")
    for name in sorted(set(fields) - secrets.documented):
        problems.append(f"field {name} is not a variable vault.yml.example lists")
    for name in sorted(secrets.everywhere - required):
        problems.append(f"field {name} is read by every environment's inventory but is not required")
    for name in sorted(required - secrets.everywhere):
        problems.append(f"field {name} is required but not every environment's inventory reads it")
    for name in sorted(fields):
        if injected.get(name) is None or not re.fullmatch(r"\{\{\s*" + re.escape(name) + r"\s*\}\}", str(injected.get(name))):
            problems.append(f"field {name} is not injected as the extra var {name}, which the inventories read")
    for name in sorted(set(injected) - set(fields)):
        problems.append(f"extra var {name} is injected from no field")
    for name in sorted(secrets.never_shown & set(fields)):
        if fields[name].get("secret") is not True:
            problems.append(f"field {name} holds a value that is never shown but is not secret: true")
    for key in sorted(env_keys):
        if key not in secrets.env_keys:
            problems.append(f"payments_env.{key} is read but no example inventory sets it")
    return problems


def credential_environment(credential: dict[str, Any]) -> set[str]:
    return set(re.findall(r"payments_controller_secrets\.(\w+)\.", str(credential.get("inputs"))))


def node_problems(workflow: dict[str, Any], node: dict[str, Any], config: dict[str, Any], environments: set[str]) -> list[str]:
    """A job node: what it gives its template is what the template asks for, for one environment."""
    where = f"workflow {workflow['name']!r} node {node.get('identifier')!r}"
    templates, credentials = by_name(config["controller_templates"]), by_name(config["controller_credentials"])
    types = by_name(config["controller_credential_types"])
    template = templates.get(node.get("unified_job_template"))
    if template is None:
        return [f"{where}: runs {node.get('unified_job_template')!r}, which is not a job template"]
    problems = []
    questions = {question["variable"]: question for question in (template.get("survey_spec") or {}).get("spec") or []}
    extra = node.get("extra_data") or {}
    for name, value in extra.items():
        if name not in questions and not template.get("ask_variables_on_launch"):
            problems.append(f"{where}: gives {name}, which the template neither asks in its survey nor on launch")
        elif name in questions:
            question = questions[name]
            if question.get("choices") and value not in question["choices"]:
                problems.append(f"{where}: gives {name}={value!r}, not one of {question['choices']}")
            if not isinstance(value, {"integer": int, "float": (int, float)}.get(question.get("type"), str)):
                problems.append(f"{where}: gives {name}={value!r}, not a {question.get('type')} answer")
    environment = extra.get("deploy_environment")
    if environment not in environments:
        problems.append(f"{where}: names no environment (deploy_environment) of {sorted(environments)}")
    if node.get("inventory") and not template.get("ask_inventory_on_launch"):
        problems.append(f"{where}: gives an inventory, which its template does not ask for")
    sources = [source for source in config["controller_inventory_sources"] if source.get("inventory") == node.get("inventory")]
    if not sources:
        problems.append(f"{where}: runs against {node.get('inventory')!r}, an inventory without a source")
    for source in sources:
        if inventory_environment(source.get("source_path", "")) != environment:
            problems.append(f"{where}: deploy_environment {environment} with {node.get('inventory')!r}, which serves "
                            f"{inventory_environment(source.get('source_path', ''))}")
    given = node.get("credentials") or []
    if given and not template.get("ask_credential_on_launch"):
        problems.append(f"{where}: gives credentials, which its template does not ask for")
    kinds = []
    for name in given:
        credential = credentials.get(name)
        if credential is None:
            problems.append(f"{where}: credential {name!r} is not defined")
            continue
        kinds.append(credential["credential_type"])
        if credential_environment(credential) != {environment}:
            problems.append(f"{where}: credential {name!r} is not {environment}'s")
    custom = [name for name in types if types[name].get("injectors")]
    for needed in [*custom, "Machine"]:
        if kinds.count(needed) != 1:
            problems.append(f"{where}: needs exactly one credential of type {needed!r}, has {kinds.count(needed)}")
    return problems


def reachable(start: str, edges: dict[str, set[str]], without: str | None = None) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node in seen or node == without:
            continue
        seen.add(node)
        todo += sorted(edges.get(node, set()))
    return seen


def imports_rollback(playbook: str) -> bool:
    path = ROOT / playbook
    if path.resolve() == (ROOT / "playbooks" / "rollback.yml").resolve():
        return True
    if not path.is_file():
        return False
    return any(resolve_import(str(play.get("ansible.builtin.import_playbook") or play.get("import_playbook")), path)
               == (ROOT / "playbooks" / "rollback.yml").resolve()
               for play in read_yaml(path) or [] if play.get("ansible.builtin.import_playbook") or play.get("import_playbook"))


def workflow_problems(workflow: dict[str, Any], config: dict[str, Any], environments: set[str]) -> list[str]:
    """The release workflow: staging deploy -> smoke test -> sign-off -> production deploy, whose failure rolls back and
    is reported; nodes that run what their templates ask for; a survey the nodes accept."""
    where = f"workflow {workflow['name']!r}"
    nodes = workflow.get("simplified_workflow_nodes") or []
    templates = by_name(config["controller_templates"])
    notifications = set(by_name(config.get("controller_notifications") or []))
    identifiers = [node.get("identifier") for node in nodes]
    problems = [f"{where}: identifier {name!r} is used twice" for name in sorted({i for i in identifiers if identifiers.count(i) > 1})]
    known = set(identifiers)
    success: dict[str, set[str]] = {}
    every: dict[str, set[str]] = {}
    for node in nodes:
        name = node.get("identifier")
        if bool(node.get("unified_job_template")) == bool(node.get("approval_node")):
            problems.append(f"{where}: node {name!r} must run either a job template or an approval")
        for kind in ("success_nodes", "failure_nodes", "always_nodes"):
            for target in node.get(kind) or []:
                if target not in known:
                    problems.append(f"{where}: node {name!r} {kind} names {target!r}, which is no node")
                every.setdefault(name, set()).add(target)
                if kind == "success_nodes":
                    success.setdefault(name, set()).add(target)
        if node.get("unified_job_template"):
            problems += node_problems(workflow, node, config, environments)
    for name in sorted(known):
        if any(name in reachable(target, every) for target in every.get(name, set())):
            problems.append(f"{where}: node {name!r} is part of a cycle")

    def playbook_of(node: dict[str, Any]) -> str:
        return (templates.get(node.get("unified_job_template")) or {}).get("playbook", "")

    def find(label: str, test) -> str | None:
        found = [node["identifier"] for node in nodes if test(node)]
        if len(found) != 1:
            problems.append(f"{where}: needs exactly one {label} node, has {len(found)}")
            return None
        return found[0]

    def environment_of(node: dict[str, Any]) -> Any:
        return (node.get("extra_data") or {}).get("deploy_environment")

    staging = find("staging deploy", lambda n: playbook_of(n) == "playbooks/deploy.yml" and environment_of(n) == "staging")
    smoke = find("staging smoke test", lambda n: playbook_of(n) == "playbooks/smoke_test.yml" and environment_of(n) == "staging")
    approval = find("approval", lambda n: bool(n.get("approval_node")))
    production = find("production deploy", lambda n: playbook_of(n) == "playbooks/deploy.yml" and environment_of(n) == "production")
    rollback = find("rollback", lambda n: imports_rollback(playbook_of(n)) and environment_of(n) == "production")
    if None in (staging, smoke, approval, production, rollback):
        return problems
    roots = known - set().union(*every.values()) if every else known
    for before, after in ((staging, smoke), (smoke, approval), (approval, production)):
        if after not in reachable(before, success) - {before}:
            problems.append(f"{where}: {after!r} does not follow {before!r} on success")
        if any(after in reachable(root, every, without=before) for root in roots):
            problems.append(f"{where}: {after!r} can run without {before!r}")
    production_node = next(node for node in nodes if node["identifier"] == production)
    if rollback not in (production_node.get("failure_nodes") or []):
        problems.append(f"{where}: the production deploy {production!r} has no failure edge to the rollback {rollback!r}")
    if rollback in reachable(staging, success):
        problems.append(f"{where}: the rollback {rollback!r} runs after a success")
    approval_node = next(node for node in nodes if node["identifier"] == approval)["approval_node"]
    timeout = approval_node.get("timeout") or 0
    if not 0 < timeout < staging_evidence_max_age_seconds():
        problems.append(f"{where}: the sign-off must expire (timeout {timeout} s) before the staging evidence it approves")
    problems += notification_problems(workflow, nodes, templates, notifications)
    problems += workflow_survey_problems(workflow, nodes, templates, environments)
    return problems


def notification_problems(workflow: dict[str, Any], nodes: list[dict[str, Any]], templates: dict[str, Any], known: set[str]) -> list[str]:
    """Every failure is heard of: an unhandled one fails the workflow (its error notification); a handled one leaves the
    workflow successful, so the failed template reports its error and the handler its outcome."""
    where = f"workflow {workflow['name']!r}"
    problems = []
    for kind in ("notification_templates_started", "notification_templates_success", "notification_templates_error",
                 "notification_templates_approvals"):
        for name in workflow.get(kind) or []:
            if name not in known:
                problems.append(f"{where}: {kind} names {name!r}, which is not a notification template")
    by_identifier = {node.get("identifier"): node for node in nodes}
    for node in nodes:
        handlers = (node.get("failure_nodes") or []) + (node.get("always_nodes") or [])
        label = f"{where}: node {node.get('identifier')!r}"
        if not handlers:
            if not workflow.get("notification_templates_error"):
                problems.append(f"{label} fails the workflow, which notifies no one on error")
            continue
        if node.get("unified_job_template") and not (templates.get(node["unified_job_template"]) or {}).get("notification_templates_error"):
            problems.append(f"{label}: its failure is handled, and its template notifies no one on error")
        for target in handlers:
            handler = templates.get((by_identifier.get(target) or {}).get("unified_job_template")) or {}
            if not handler.get("notification_templates_success") or not handler.get("notification_templates_error"):
                problems.append(f"{label}: the template of {target!r}, which handles its failure, does not notify on success and error")
    if any(node.get("approval_node") for node in nodes) and not workflow.get("notification_templates_approvals"):
        problems.append(f"{where}: has a sign-off, but no one is notified that it waits")
    for template in templates.values():
        for kind in ("notification_templates_started", "notification_templates_success", "notification_templates_error"):
            for name in template.get(kind) or []:
                if name not in known:
                    problems.append(f"job template {template['name']!r}: {kind} names {name!r}, which is not a notification template")
    return problems


def workflow_survey_problems(workflow: dict[str, Any], nodes: list[dict[str, Any]], templates: dict[str, Any],
                             environments: set[str]) -> list[str]:
    """A workflow's survey answers reach every job it runs: each must be an input of a node's playbook, of the right type,
    and no other node's playbook may read it."""
    where = f"workflow {workflow['name']!r}"
    playbooks = sorted({templates[node["unified_job_template"]]["playbook"] for node in nodes
                        if node.get("unified_job_template") in templates})
    problems = []
    for question in (workflow.get("survey_spec") or {}).get("spec") or []:
        variable = question.get("variable")
        taking = [playbook for playbook in playbooks if variable in playbook_inputs(ROOT / playbook)]
        if not taking:
            problems.append(f"{where}: {variable} is an input of none of its playbooks")
        for playbook in taking:
            problems += question_problems(f"{where} ({playbook})", question, playbook_inputs(ROOT / playbook), environments)
        for playbook in set(playbooks) - set(taking):
            if variable in playbook_reads(ROOT / playbook):
                problems.append(f"{where}: {variable} reaches {playbook}, which reads it but does not take it as an input")
        for node in nodes:
            if variable in (node.get("extra_data") or {}):
                problems.append(f"{where}: the answer for {variable} would override what node {node.get('identifier')!r} gives")
    return problems


def reference_problems(config: dict[str, Any]) -> list[str]:
    """Every name one object gives another is defined (or built into the controller) and every path is in the project."""
    problems = [f"{name} is not a variable infra.aap_configuration reads" for name in sorted(config)
                if name not in DISPATCH_VARIABLES and not name.startswith(OWN_VARIABLE_PREFIX)]
    projects = by_name(config["controller_projects"])
    environments = by_name(config["controller_execution_environments"])
    inventories = by_name(config["controller_inventories"])
    types = by_name(config["controller_credential_types"])
    for project in projects.values():
        if project.get("default_environment") not in environments:
            problems.append(f"project {project['name']!r}: execution environment {project.get('default_environment')!r} is not defined")
    for template in config["controller_templates"]:
        if template.get("project") not in projects:
            problems.append(f"job template {template['name']!r}: project {template.get('project')!r} is not defined")
        if template.get("execution_environment") not in environments:
            problems.append(f"job template {template['name']!r}: execution environment {template.get('execution_environment')!r} is not defined")
    for source in config["controller_inventory_sources"]:
        if source.get("inventory") not in inventories:
            problems.append(f"inventory source {source['name']!r}: inventory {source.get('inventory')!r} is not defined")
        if source.get("source_project") not in projects:
            problems.append(f"inventory source {source['name']!r}: project {source.get('source_project')!r} is not defined")
        if not (ROOT / source.get("source_path", "")).is_file():
            problems.append(f"inventory source {source['name']!r}: {source.get('source_path')!r} is not in the project")
    for credential in config["controller_credentials"]:
        if credential.get("credential_type") not in set(types) | BUILT_IN_CREDENTIAL_TYPES:
            problems.append(f"credential {credential['name']!r}: type {credential.get('credential_type')!r} is not defined")
    return problems


def schedule_problems(config: dict[str, Any]) -> list[str]:
    """Every schedule runs a defined job template with a valid rule, a defined inventory and credentials, and gives it
    only variables its survey asks for."""
    problems = []
    templates, credentials = by_name(config["controller_templates"]), by_name(config["controller_credentials"])
    inventories = by_name(config["controller_inventories"])
    for schedule in config.get("controller_schedules", []):
        where = f"schedule {schedule.get('name')!r}"
        template = templates.get(schedule.get("unified_job_template"))
        if template is None:
            problems.append(f"{where}: job template {schedule.get('unified_job_template')!r} is not defined")
            continue
        rule = str(schedule.get("rrule", ""))
        if not re.fullmatch(r"DTSTART:\d{8}T\d{6}Z RRULE:FREQ=(DAILY|WEEKLY|MONTHLY);INTERVAL=\d+(;[A-Z]+=[A-Z0-9,]+)*", rule):
            problems.append(f"{where}: rrule {rule!r} is not a controller rule (DTSTART in UTC, FREQ and INTERVAL)")
        if schedule.get("inventory") not in inventories:
            problems.append(f"{where}: inventory {schedule.get('inventory')!r} is not defined")
        problems += [f"{where}: credential {name!r} is not defined" for name in schedule.get("credentials", []) if name not in credentials]
        asked = {question["variable"] for question in (template.get("survey_spec") or {}).get("spec", [])}
        problems += [f"{where}: {variable} is not asked by the survey of {template['name']!r}"
                     for variable in schedule.get("extra_data") or {} if variable not in asked]
    return problems

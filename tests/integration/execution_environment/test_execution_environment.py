"""The execution environment definition (execution-environment.yml) as ansible-builder reads it, offline: `create` writes
a build context that installs what the definition says (base image, ansible-core and ansible-runner as tested, the
roles' collections, this collection from its built tarball, requirements-ee.txt, bindep.txt); the built collection
declares the same requirements to `ansible-builder introspect` (meta/execution-environment.yml); requirements-ee.txt
lists exactly the third-party libraries the plugins import; a definition ansible-builder cannot use is refused."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bindep.depends import Depends
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
DEFINITION = ROOT / "execution-environment.yml"
COLLECTION_ROOT = Path("/usr/share/ansible/collections")  # where ansible-builder's galaxy stage installs collections

# The distribution that provides each third-party import name found in plugins/ (None: ansible-core requires it).
IMPORT_DISTRIBUTIONS: dict[str, str | None] = {
    "boto3": "boto3",
    "botocore": "boto3",  # a dependency of boto3; only imported together with it
    "cryptography": "cryptography",
    "matplotlib": "matplotlib",
    "psycopg": "psycopg",
    "redis": "redis",
    "stripe": "stripe",
    "packaging": None,  # a dependency of ansible-core itself: every execution environment has it
    "yaml": None,
    "zstandard": "zstandard",
}
FIRST_PARTY = {"ansible", "ansible_collections"}


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})})


def definition() -> dict:
    return yaml.safe_load(DEFINITION.read_text())


def requirement_lines(text: str) -> list[str]:
    """The entries of a pip requirements or bindep file, without comments and blank lines."""
    lines = (re.sub(r"(^|\s+)#.*$", "", line).strip() for line in text.splitlines())
    return [line for line in lines if line]


def requirements_ee() -> dict[str, Requirement]:
    requirements = [Requirement(line) for line in requirement_lines((ROOT / "requirements-ee.txt").read_text())]
    return {canonicalize_name(requirement.name): requirement for requirement in requirements}


def dev_pins() -> dict[str, str]:
    lines = requirement_lines((ROOT / "requirements-dev.txt").read_text())
    pins = [Requirement(line) for line in lines if not line.startswith("-")]  # not options such as -r or -c
    return {canonicalize_name(pin.name): f"{pin.name}{pin.specifier}" for pin in pins}


def galaxy() -> dict:
    return yaml.safe_load((ROOT / "galaxy.yml").read_text())


def tarball_name() -> str:
    return "{namespace}-{name}-{version}.tar.gz".format(**galaxy())


@pytest.fixture(scope="module")
def built_collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection's tarball, built by ansible-galaxy from the files git would commit (tracked, or new and not ignored)."""
    tree = tmp_path_factory.mktemp("source") / "payments" / "deploy"
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode()
    for name in filter(None, listing.split("\0")):
        source, target = ROOT / name, tree / name
        if not os.path.lexists(source):
            continue  # deleted in the work tree
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    output = tmp_path_factory.mktemp("built")
    (output / "ansible.cfg").touch()
    done = run(BIN / "ansible-galaxy", "collection", "build", "--output-path", output, cwd=tree,
               env={"ANSIBLE_CONFIG": str(output / "ansible.cfg")})
    assert done.returncode == 0, done.stdout + done.stderr
    return output / tarball_name()


@pytest.fixture(scope="module")
def context(built_collection: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ansible-builder create` run on a copy of execution-environment.yml and the files it names, with the built tarball."""
    work = tmp_path_factory.mktemp("ee")
    shutil.copy2(DEFINITION, work)
    data = definition()
    for key in ("python", "system", "galaxy"):
        shutil.copy2(ROOT / data["dependencies"][key], work)
    shutil.copy2(built_collection, work)
    done = run(BIN / "ansible-builder", "create", "-f", "execution-environment.yml", "--context", "context",
               "--output-filename", "Containerfile", cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No matches" not in done.stdout + done.stderr, done.stdout + done.stderr  # an additional build file not found
    return work / "context"


def containerfile_stages(context: Path) -> dict[str, list[str]]:
    """The Containerfile's lines by build stage (the ARG lines before the first FROM are under '')."""
    stages: dict[str, list[str]] = {"": []}
    current = ""
    for line in (context / "Containerfile").read_text().splitlines():
        match = re.match(r"FROM \S+ AS (\S+)$", line)
        if match:
            current = match.group(1)
            stages[current] = []
        stages[current].append(line)
    return stages


def test_the_containerfile_starts_from_the_base_image(context: Path) -> None:
    image = definition()["images"]["base_image"]["name"]
    assert re.fullmatch(r"[\w.\-/]+:[\w.\-]+", image), f"the base image needs a tag: {image}"
    stages = containerfile_stages(context)
    assert f'ARG EE_BASE_IMAGE="{image}"' in stages[""]
    assert stages["base"][0] == "FROM $EE_BASE_IMAGE AS base"
    assert list(stages) == ["", "base", "galaxy", "builder", "final"]


def test_ansible_core_and_runner_are_the_versions_the_collection_is_tested_with(context: Path) -> None:
    pins = dev_pins()
    data = definition()["dependencies"]
    assert data["ansible_core"]["package_pip"] == pins["ansible-core"]
    assert data["ansible_runner"]["package_pip"] == pins["ansible-runner"]
    stages = containerfile_stages(context)
    assert f'ARG ANSIBLE_INSTALL_REFS="{pins["ansible-core"]} {pins["ansible-runner"]}"' in stages[""]
    assert "RUN $PYCMD -m pip install --no-cache-dir $ANSIBLE_INSTALL_REFS" in stages["base"]
    assert "RUN /output/scripts/check_ansible $PYCMD" in stages["final"]


def test_the_python_and_system_requirements_go_into_the_image(context: Path) -> None:
    assert (context / "_build" / "requirements.txt").read_text() == (ROOT / "requirements-ee.txt").read_text()
    assert (context / "_build" / "bindep.txt").read_text() == (ROOT / "bindep.txt").read_text()
    introspect = [line for line in containerfile_stages(context)["builder"] if "introspect.py introspect" in line]
    assert len(introspect) == 1 and "--user-pip=requirements.txt" in introspect[0] and "--user-bindep=bindep.txt" in introspect[0]
    assert "RUN /output/scripts/install-from-bindep && rm -rf /output/wheels" in containerfile_stages(context)["final"]


def test_the_roles_collections_and_this_collection_are_installed(context: Path, built_collection: Path) -> None:
    requirements = yaml.safe_load((ROOT / "requirements.yml").read_text())
    assert yaml.safe_load((context / "_build" / "requirements.yml").read_text()) == requirements
    # The tarball is installed with --offline: every dependency in galaxy.yml must come from requirements.yml.
    wanted = {entry["name"]: entry.get("version", "*") for entry in requirements["collections"]}
    for name, version in galaxy()["dependencies"].items():
        assert wanted.get(name) == version, f"galaxy.yml depends on {name} {version}; requirements.yml has {wanted.get(name)}"

    copied = context / "_build" / "collections" / tarball_name()
    assert copied.exists(), f"execution-environment.yml does not copy {tarball_name()} (galaxy.yml's version) into the build"
    assert hashlib.sha256(copied.read_bytes()).digest() == hashlib.sha256(built_collection.read_bytes()).digest()
    galaxy_stage = containerfile_stages(context)["galaxy"]
    from_requirements = [i for i, line in enumerate(galaxy_stage) if "ansible-galaxy collection install" in line and "-r requirements.yml" in line]
    from_tarball = [i for i, line in enumerate(galaxy_stage) if line.startswith("RUN ansible-galaxy collection install")
                    and "--offline" in line and f"--collections-path {COLLECTION_ROOT}" in line
                    and line.endswith(f" /build/collections/{tarball_name()}")]
    assert len(from_requirements) == 1 and len(from_tarball) == 1, "\n".join(galaxy_stage)
    assert from_requirements[0] < from_tarball[0], "the tarball's dependencies must be installed first"


def test_the_built_collection_declares_its_requirements_to_introspect(built_collection: Path, tmp_path: Path) -> None:
    (tmp_path / "ansible.cfg").touch()
    env = {"ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}
    done = run(BIN / "ansible-galaxy", "collection", "install", "--offline", "--no-deps", "-p", tmp_path / "collections",
               built_collection, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    done = run(BIN / "ansible-builder", "introspect", tmp_path / "collections", "--write-pip", tmp_path / "pip.txt",
               "--write-bindep", tmp_path / "bindep.txt", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = yaml.safe_load(done.stdout.split("\n", 1)[1])  # after the '# Dependency data for ...' line
    assert report["python"] and all(line.endswith("# from collection payments.deploy") for line in report["python"])
    assert requirement_lines((tmp_path / "pip.txt").read_text()) == requirement_lines((ROOT / "requirements-ee.txt").read_text())
    assert requirement_lines((tmp_path / "bindep.txt").read_text()) == requirement_lines((ROOT / "bindep.txt").read_text())


def third_party_imports(plugins: Path) -> dict[str, set[str]]:
    """Every top-level name imported anywhere in plugins/ (also inside try blocks and functions) that is neither the
    standard library nor Ansible, with the files that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted(plugins.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                    found.setdefault(top, set()).add(str(path.relative_to(plugins)))
    return found


def uncovered_imports(plugins: Path, requirements: dict[str, Requirement]) -> list[str]:
    """What plugins/ imports that requirements-ee.txt does not bring, one sentence each."""
    problems = []
    for name, files in sorted(third_party_imports(plugins).items()):
        if name not in IMPORT_DISTRIBUTIONS:
            problems.append(f"{name} (imported by {', '.join(sorted(files))}): no known distribution; add it to IMPORT_DISTRIBUTIONS")
        elif IMPORT_DISTRIBUTIONS[name] and canonicalize_name(IMPORT_DISTRIBUTIONS[name]) not in requirements:
            problems.append(f"{name} (imported by {', '.join(sorted(files))}): {IMPORT_DISTRIBUTIONS[name]} is not in requirements-ee.txt")
    return problems


def test_every_third_party_import_in_plugins_is_in_requirements_ee() -> None:
    assert uncovered_imports(ROOT / "plugins", requirements_ee()) == []


def test_requirements_ee_lists_nothing_the_plugins_do_not_import() -> None:
    imported = {IMPORT_DISTRIBUTIONS.get(name) for name in third_party_imports(ROOT / "plugins")}
    unused = set(requirements_ee()) - {canonicalize_name(name) for name in imported if name}
    assert not unused, f"requirements-ee.txt lists what no plugin imports: {sorted(unused)}"


def test_what_ansible_core_provides_is_one_of_its_requirements() -> None:
    from importlib.metadata import requires

    core = {canonicalize_name(Requirement(line).name) for line in requires("ansible-core") or []}
    assert {"pyyaml", "packaging"} <= core
    assert [name for name, distribution in IMPORT_DISTRIBUTIONS.items() if distribution is None] == ["packaging", "yaml"]


def test_the_import_check_reports_a_library_missing_from_the_requirements(tmp_path: Path) -> None:
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "probe.py").write_text(
        "from __future__ import annotations\nimport json, os.path\nfrom . import sibling\n"
        "from ansible.module_utils.basic import AnsibleModule\n"
        "def main():\n    try:\n        import requests_oauthlib\n    except ImportError:\n        pass\n"
        "    from psycopg import sql\n    import stripe.error\n")
    requirements = {"psycopg": Requirement("psycopg[binary]>=3.1")}
    assert third_party_imports(tmp_path) == {"requests_oauthlib": {"modules/probe.py"}, "psycopg": {"modules/probe.py"},
                                             "stripe": {"modules/probe.py"}}
    assert uncovered_imports(tmp_path, requirements) == [
        "requests_oauthlib (imported by modules/probe.py): no known distribution; add it to IMPORT_DISTRIBUTIONS",
        "stripe (imported by modules/probe.py): stripe is not in requirements-ee.txt",
    ]


def test_minimum_versions_are_the_ones_host_dependencies_checks() -> None:
    defaults = yaml.safe_load((ROOT / "roles" / "host_dependencies" / "defaults" / "main.yml").read_text())
    requirements = requirements_ee()
    minimums = {entry["name"]: entry["min_version"] for kind in defaults["host_dependencies_requirements"].values()
                for entry in kind["python_modules"] if "min_version" in entry}
    assert minimums, "host_dependencies names no minimum version"
    for name, minimum in minimums.items():
        if IMPORT_DISTRIBUTIONS.get(name, name) is None:
            continue  # comes with ansible-core
        requirement = requirements.get(canonicalize_name(IMPORT_DISTRIBUTIONS.get(name, name)))
        if requirement is None:
            continue  # not a library of the plugins (the other tests say what requirements-ee.txt must hold)
        assert str(requirement.specifier) == f">={minimum}", f"{requirement}: host_dependencies wants {name} >= {minimum}"


def test_bindep_names_each_package_for_both_package_families() -> None:
    depends = Depends((ROOT / "bindep.txt").read_text())
    rpm = [rule[0] for rule in depends.active_rules(["default", "platform:rpm", "platform:redhat", "platform:centos"])]
    dpkg = [rule[0] for rule in depends.active_rules(["default", "platform:dpkg", "platform:debian"])]
    assert "openssh-clients" in rpm and "openssh-client" in dpkg
    assert len(rpm) == len(dpkg), f"rpm: {rpm}, dpkg: {dpkg}"
    assert not set(rpm) & set(dpkg), "a rule without a platform selector would install on both"


def create(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    (tmp_path / "execution-environment.yml").write_text(text)
    return run(BIN / "ansible-builder", "create", "-f", "execution-environment.yml", "--context", "context", cwd=tmp_path)


def test_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    done = create(tmp_path, DEFINITION.read_text().replace("\nversion: 3\n", "\nversion: 4\n"))
    assert done.returncode != 0
    assert "Unsupported schema version: 4" in done.stdout + done.stderr
    assert not (tmp_path / "context").exists()


def test_a_missing_requirements_file_is_refused(tmp_path: Path) -> None:
    done = create(tmp_path, "---\nversion: 3\ndependencies:\n  python: requirements-ee.txt\n")
    assert done.returncode != 0
    assert "Dependency file requirements-ee.txt does not exist" in done.stdout + done.stderr

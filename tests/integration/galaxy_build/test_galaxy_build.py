"""The collection as its users get it. `ansible-galaxy collection build`, run on a copy of the repository's files (plus
files git ignores that a checkout accumulates), makes a tarball that holds what a user runs and nothing else: no lab,
tests, benchmarks, developer settings or lab inventories. Installed from that tarball into an empty directory, with no
ansible.cfg and nothing of the checkout on the collections path, ansible-doc documents every module, role and plugin,
every playbook passes a syntax check by its FQCN, and a playbook runs a module, a filter and the callback by FQCN.

The tarball's size and entry count are printed and written to tests/output/galaxy-build.json."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SITE_PACKAGES = sysconfig.get_paths()["purelib"]  # the `ansible` package's collections (community.general, ...)
REPORT = ROOT / "tests" / "output" / "galaxy-build.json"

# What a user of the collection runs or reads: everything in the tarball must be one of these.
KEPT_DIRS = ("plugins/", "roles/", "playbooks/", "meta/", "docs/", "inventories/example/", "runbooks/", "controller/",
             "changelogs/fragments/", "checklist/",  # checklist/: the map the production gate and the run report read
             "recovery/")  # recovery/: the standalone backup recovery script (docs/backup-recovery-by-hand.md)
KEPT_FILES = {"README.md", "LICENSE", "CHANGELOG.md", "requirements.txt", "requirements.yml", "bindep.txt",
              "execution-environment.yml", "requirements-ee.txt", "changelogs/changelog.yaml", "changelogs/config.yaml"}
# Inside the kept directories, what only makes sense in the checkout (the runbooks' inventories link to the lab's).
LAB_ONLY = ("inventories/example/lab-overlay.yml", "runbooks/*/inventory")
# What must never be in the tarball, whatever else changes.
LEFT_OUT_DIRS = ("lab/", "tests/", "bench/", "scripts/", "extensions/", ".ci/", ".github/", "inventories/lab/", "inventories/lab-ssh/",
                 ".cache/", ".venv/", ".venv-hosts/", ".lab/", ".pytest_cache/")
LEFT_OUT_FILES = {"Makefile", "ansible.cfg", "pytest.ini", ".ansible-lint", ".gitignore", "requirements-dev.txt",
                  "galaxy.yml"}
# Files git ignores that a working checkout has: build_ignore must leave them out even when building from a checkout.
STRAY_FILES = (".lab/secrets.json", ".lab-faults/secrets.json", ".cache/collections/stray", ".venv/pyvenv.cfg",
               ".venv-hosts/pyvenv.cfg",
               ".pytest_cache/README.md", "tests/output/fault-suite.log", "runbooks/deploy/env/passwords",
               "runbooks/deploy/env/ssh_key", "runbooks/deploy/env/envvars", "runbooks/deploy/env/cmdline",
               "runbooks/rollback/artifacts/1/stdout", "plugins/modules/__pycache__/smoke_test.cpython-313.pyc",
               "roles/release/files/__pycache__/payments-launch.cpython-313.pyc", "__pycache__/stray.pyc",
               "payments-deploy-0.0.9.tar.gz")


def repository_files() -> list[str]:
    """Tracked files and new ones git does not ignore, as the sanity target copies them (deleted files left out)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    return sorted({name for name in listed.split("\0") if name and os.path.lexists(ROOT / name)})


def user_runs(name: str) -> bool:
    if any(fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name, pattern + "/*") for pattern in LAB_ONLY):
        return False
    return name in KEPT_FILES or name.startswith(KEPT_DIRS)


def must_be_left_out(name: str) -> bool:
    parts = name.split("/")
    return (name in LEFT_OUT_FILES or name.startswith(LEFT_OUT_DIRS) or "__pycache__" in parts
            or name.endswith((".pyc", ".tar.gz")) or parts[0].startswith("."))


@dataclass
class Build:
    tarball: Path
    files: set[str]  # regular files and links
    entries: int  # every member, directories included (as `tar tzf | wc -l` counts)
    listed: list[str]


@dataclass
class Installed:
    collections: Path  # the -p directory, first on the collections path
    path: Path  # .../ansible_collections/payments/deploy
    work: Path  # an empty working directory: no checkout file around
    env: dict[str, str]


def run(tool: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """One of the virtualenv's ansible commands."""
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def clean_env(top: Path) -> dict[str, str]:
    """No setting of the caller's (ANSIBLE_CONFIG from make, an inventory, a collections path) reaches the commands."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ANSIBLE_", "PAYMENTS_")) and key != "PYTHONPATH"}
    env.update(PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}", ANSIBLE_CONFIG=str(top / "absent.cfg"),
               ANSIBLE_HOME=str(top / "ansible-home"), ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_COLLECTIONS_PATH=f"{top / 'collections'}:{SITE_PACKAGES}")
    return env


def copy_files(names: list[str], dest: Path) -> None:
    for name in names:
        source, target = ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    top = tmp_path_factory.mktemp("galaxy-build")
    tree = top / "ansible_collections" / "payments" / "deploy"
    listed = repository_files()
    copy_files(listed, tree)
    for name in STRAY_FILES:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("stray\n")
    done = run("ansible-galaxy", "collection", "build", "--output-path", str(top / "dist"), cwd=tree, env=clean_env(top))
    assert done.returncode == 0, done.stdout + done.stderr
    tarball = next((top / "dist").glob("payments-deploy-*.tar.gz"))
    with tarfile.open(tarball) as archive:
        members = archive.getmembers()
    return Build(tarball, {member.name for member in members if not member.isdir()}, len(members), listed)


@pytest.fixture(scope="module")
def installed(build: Build, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    top = tmp_path_factory.mktemp("galaxy-install")
    env = clean_env(top)
    (top / "work").mkdir()
    done = run("ansible-galaxy", "collection", "install", str(build.tarball), "-p", str(top / "collections"), "--no-deps",
               cwd=top / "work", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return Installed(top / "collections", top / "collections" / "ansible_collections" / "payments" / "deploy",
                     top / "work", env)


def checkout_names(kind: str) -> list[str]:
    return sorted(path.stem for path in (ROOT / "plugins" / kind).glob("*.py") if path.name != "__init__.py")


def test_the_tarball_leaves_out_what_users_do_not_run(build: Build) -> None:
    leaked = sorted(name for name in build.files if must_be_left_out(name))
    assert not leaked, f"excluded paths in {build.tarball.name}: {leaked}"
    strays = sorted(name for name in STRAY_FILES if name in build.files)
    assert not strays, f"files git ignores in {build.tarball.name}: {strays}"
    unexpected = sorted(name for name in build.files - {"MANIFEST.json", "FILES.json"} if not user_runs(name))
    assert not unexpected, (f"{unexpected} are in the tarball: add them to build_ignore in galaxy.yml, or to "
                            "KEPT_DIRS / KEPT_FILES here when users need them")


def test_the_tarball_holds_everything_users_run(build: Build) -> None:
    required = {"LICENSE", "README.md", "meta/runtime.yml", "requirements.txt", "requirements.yml",
                "changelogs/changelog.yaml", "inventories/example/production/hosts.yml"}
    required |= {f"plugins/modules/{name}.py" for name in checkout_names("modules")}
    required |= {f"plugins/callback/{name}.py" for name in checkout_names("callback")}
    required |= {f"playbooks/{path.name}" for path in (ROOT / "playbooks").glob("*.yml")}
    required |= {f"roles/{path.parent.parent.name}/tasks/main.yml" for path in (ROOT / "roles").glob("*/tasks/main.yml")}
    required |= {name for name in build.listed if user_runs(name)}
    missing = sorted(required - build.files)
    assert not missing, f"{build.tarball.name} lacks {missing}"
    assert len([name for name in required if name.startswith("plugins/modules/")]) >= 20


def test_the_tarball_carries_the_licence(build: Build) -> None:
    with tarfile.open(build.tarball) as archive:
        licence = archive.extractfile("LICENSE").read().decode()
        manifest = json.load(archive.extractfile("MANIFEST.json"))
    assert licence.lstrip().startswith("GNU GENERAL PUBLIC LICENSE") and "Version 3, 29 June 2007" in licence
    assert "END OF TERMS AND CONDITIONS" in licence  # the full text, not a notice
    assert manifest["collection_info"]["license"] == ["GPL-3.0-or-later"]


def test_size_and_entries_are_reported(build: Build) -> None:
    size = build.tarball.stat().st_size
    figures = {"tarball": build.tarball.name, "bytes": size, "kb": round(size / 1024), "entries": build.entries,
               "files": len(build.files)}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{build.tarball.name}: {figures['kb']} KB, {build.entries} entries ({len(build.files)} files)")
    # A budget, not a target: the lab and the tests would add more than the tarball itself (they are over 1 MB and 800
    # entries), a venv tens of MB; what users run grew with the maintenance, drill, audit and data-scan modules to about
    # 830 KB and 640 entries.
    assert size < 900 * 1024 and build.entries < 700, figures


def test_the_installed_copy_is_the_one_found(installed: Installed) -> None:
    done = run("ansible-galaxy", "collection", "list", "payments.deploy", "--format", "json", cwd=installed.work,
               env=installed.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(json.loads(done.stdout)) == [str(installed.collections / "ansible_collections")], done.stdout
    assert (installed.path / "MANIFEST.json").is_file() and not (installed.path / "lab").exists()


def test_ansible_doc_lists_every_module_and_role(installed: Installed) -> None:
    modules = run("ansible-doc", "-l", "payments.deploy", "-j", cwd=installed.work, env=installed.env)
    assert modules.returncode == 0, modules.stdout + modules.stderr
    assert sorted(json.loads(modules.stdout)) == [f"payments.deploy.{name}" for name in checkout_names("modules")]
    roles = run("ansible-doc", "-t", "role", "-l", "payments.deploy", "-j", cwd=installed.work, env=installed.env)
    assert roles.returncode == 0, roles.stdout + roles.stderr
    expected = sorted(f"payments.deploy.{path.name}" for path in (ROOT / "roles").iterdir() if path.is_dir())
    assert sorted(json.loads(roles.stdout)) == expected


def test_every_module_page_renders(installed: Installed) -> None:
    names = [f"payments.deploy.{name}" for name in checkout_names("modules")]
    done = run("ansible-doc", "-t", "module", *names, cwd=installed.work, env=installed.env)
    assert done.returncode == 0 and "[ERROR]" not in done.stderr, done.stderr
    for name in names:
        source = installed.path / "plugins" / "modules" / f"{name.rsplit('.', 1)[1]}.py"
        assert f"> MODULE {name} ({source})" in done.stdout, f"no page for {name} from {source}"


@pytest.mark.parametrize("kind", ["callback", "filter"])
def test_every_other_plugin_is_documented(installed: Installed, kind: str) -> None:
    names = [f"payments.deploy.{name}" for name in checkout_names(kind)]
    assert names, f"no {kind} plugin in plugins/{kind}"
    done = run("ansible-doc", "-t", kind, "-j", *names, cwd=installed.work, env=installed.env)
    assert done.returncode == 0, done.stdout + done.stderr
    pages = json.loads(done.stdout)
    for name in names:
        assert pages[name]["doc"]["filename"] == str(installed.path / "plugins" / kind / f"{name.rsplit('.', 1)[1]}.py")
        assert pages[name]["doc"]["short_description"]


def throwaway_inventory(work: Path) -> Path:
    """The groups the playbooks target, every host local: a syntax check needs no reachable host."""
    hosts = {name: {"hosts": {host: {}}} for name, host in
             [("loadbalancers", "lb1"), ("databases", "db1"), ("production_app", "app1"), ("staging_app", "stg1")]}
    path = work / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"children": hosts, "vars": {"ansible_connection": "local"}}}))
    return path


def test_every_playbook_passes_a_syntax_check_by_fqcn(installed: Installed) -> None:
    names = sorted(path.stem for path in (ROOT / "playbooks").glob("*.yml"))
    assert {"deploy", "rollback", "unlock"} <= set(names)
    inventory = throwaway_inventory(installed.work)
    done = run("ansible-playbook", "-i", str(inventory), "--syntax-check", *[f"payments.deploy.{name}" for name in names],
               cwd=installed.work, env=installed.env)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in names:
        assert f"playbook: {installed.path / 'playbooks' / name}.yml" in done.stdout, done.stdout


def test_an_unknown_playbook_name_is_refused(installed: Installed) -> None:
    done = run("ansible-playbook", "--syntax-check", "payments.deploy.no_such_playbook", cwd=installed.work,
               env=installed.env)
    assert done.returncode != 0 and "could not be found" in done.stderr, done.stdout + done.stderr


PLAYBOOK = """
- name: The installed collection by FQCN
  hosts: localhost
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Look for a library and a program the controller has
      payments.deploy.host_dependencies_info:
        python_modules: [yaml]
        binaries: [sh]
      register: found
    - name: Check what the module and the filter return
      ansible.builtin.assert:
        that:
          - found.missing == []
          - found.present | map(attribute='name') | list == ['yaml', 'sh']
          - ('postgresql://u@db.example.com/payments?sslmode=verify-full' | payments.deploy.pg_conninfo).tls
"""


def test_a_playbook_runs_modules_filters_and_the_callback_by_fqcn(installed: Installed) -> None:
    playbook = installed.work / "fqcn.yml"
    playbook.write_text(PLAYBOOK)
    timings = installed.work / "timings.json"
    env = {**installed.env, "ANSIBLE_CALLBACKS_ENABLED": "payments.deploy.phase_timings",
           "PAYMENTS_PHASE_TIMINGS_FILE": str(timings)}
    inventory = throwaway_inventory(installed.work)
    done = run("ansible-playbook", "-i", str(inventory), str(playbook), cwd=installed.work, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PHASE TIMINGS" in done.stdout, done.stdout
    phases = json.loads(timings.read_text())["phases"]
    assert [phase["phase"] for phase in phases] == ["The installed collection by FQCN"], phases

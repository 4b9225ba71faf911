#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_dependencies_info
short_description: Check that a host has the Python libraries and programs the collection's modules need
version_added: 0.1.0
description:
  - Looks for each Python module of O(python_modules) in the interpreter this module runs on (the host's
    C(ansible_python_interpreter)), without importing it, and for each program of O(binaries) on the host.
  - Reports what is present and what is missing, with versions, and by default fails with one message that lists
    everything missing and the Debian package that provides each, so that a run stops before anything changes
    instead of halfway through a deploy.
  - A Python module is found with C(importlib.util.find_spec) (a dotted name imports its parent packages) and its
    version is the one of the distribution that ships it (C(importlib.metadata)). A module that is found but cannot be
    imported (for example C(psycopg) without C(libpq) nor C(psycopg[binary])) counts as present.
  - A program is looked up on C(PATH) and in C(/sbin), C(/usr/sbin) and C(/usr/local/sbin); an absolute path must name
    an executable file. Its version is read only when O(min_versions) names it, from the first dotted number that
    C(PROGRAM --version) prints.
  - Read-only; the role C(payments.deploy.host_dependencies) runs it for every host group and installs what is missing.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  python_modules:
    description:
      - Import names of the Python modules to look for, for example V(psycopg), V(zstandard), V(cryptography), V(boto3),
        V(yaml) (the C(PyYAML) distribution).
    type: list
    elements: str
    default: []
  binaries:
    description:
      - Programs to look for, each a name (V(pg_dump)) or an absolute path (V(/usr/bin/supervisorctl)).
    type: list
    elements: str
    default: []
  min_versions:
    description:
      - "The oldest acceptable version of some of the O(python_modules) or O(binaries), by the name given there, for
        example C({psycopg: '3.1', pg_dump: '15'})."
      - Versions compare by their leading dotted numbers (V(3.3.9) is newer than V(3.1); V(2.6.12-1+deb12u4) is V(2.6.12)).
      - A module or program whose version cannot be told while a minimum is set counts as missing.
    type: dict
    default: {}
  debian_packages:
    description:
      - The Debian package that provides a module or program, by the name given in O(python_modules) or O(binaries)
        (the base name for an absolute path); added to and overriding the known ones, which are C(psycopg)
        (C(python3-psycopg)), C(zstandard) (C(python3-zstandard), not C(python3-zstd), which is another library),
        C(cryptography), C(boto3), C(botocore), C(stripe), C(redis), C(requests), C(yaml) (C(python3-NAME)),
        C(pg_dump), C(pg_restore), C(psql) (C(postgresql-client)), C(haproxy), C(supervisorctl) (C(supervisor)),
        C(promtool) (C(prometheus)) and C(minisign).
    type: dict
    default: {}
  fail_on_missing:
    description:
      - Fail when anything is missing, with one message listing all of it and the Debian packages to install.
      - With V(false), succeeds and reports the same in RV(missing) and RV(msg).
    type: bool
    default: true
notes:
  - Python modules are looked for in the interpreter that runs this module, which is the one that runs every other
    module of the play on that host; a library installed for another interpreter (or in a virtual environment) is not
    seen unless C(ansible_python_interpreter) points there.
seealso:
  - module: ansible.builtin.package_facts
"""

EXAMPLES = r"""
- name: Check what the backup and restore modules need on the database host
  payments.deploy.host_dependencies_info:
    python_modules: [psycopg, zstandard, cryptography, boto3]
    binaries: [pg_dump, pg_restore]
    min_versions:
      psycopg: "3.1"
      pg_dump: "15"

- name: Report without failing
  payments.deploy.host_dependencies_info:
    python_modules: [stripe, redis]
    binaries: [haproxy]
    min_versions: {stripe: "12.5"}
    fail_on_missing: false
  register: deps

- name: Show the Debian packages that would complete this host
  ansible.builtin.debug:
    msg: "{{ deps.debian_packages | join(' ') }}"
  when: deps.missing | length > 0
"""

RETURN = r"""
present:
  description: The modules and programs found (and recent enough), in the order asked.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The name as given.
      type: str
      sample: psycopg
    kind:
      description: V(python_module) or V(binary).
      type: str
      sample: python_module
    version:
      description:
        - The installed version; V(null) when it cannot be told, and for a program that O(min_versions) does not name.
      type: str
      sample: 3.3.9
    path:
      description: Where it was found (the module's file or package directory, the program's path).
      type: str
      sample: /usr/lib/python3/dist-packages/psycopg/__init__.py
    min_version:
      description: The minimum of O(min_versions), V(null) when none.
      type: str
      sample: "3.1"
    debian_package:
      description: The Debian package that provides it, V(null) when unknown.
      type: str
      sample: python3-psycopg
  sample:
    - {"name": "psycopg", "kind": "python_module", "version": "3.3.9", "min_version": "3.1", "debian_package": "python3-psycopg",
       "path": "/usr/lib/python3/dist-packages/psycopg/__init__.py"}
missing:
  description:
    - The modules and programs not found, or older than their minimum, or whose version could not be told while a
      minimum is set; the same fields as RV(present), and RV(missing[].problem).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The name as given.
      type: str
      sample: pg_dump
    kind:
      description: V(python_module) or V(binary).
      type: str
      sample: binary
    version:
      description: The version found when it is too old, else V(null).
      type: str
      sample: null
    path:
      description: Where it was found when it is too old, else V(null).
      type: str
      sample: null
    min_version:
      description: The minimum of O(min_versions), V(null) when none.
      type: str
      sample: null
    debian_package:
      description: The Debian package that provides it, V(null) when unknown.
      type: str
      sample: postgresql-client
    problem:
      description: What is wrong.
      type: str
      sample: not found
  sample:
    - {"name": "pg_dump", "kind": "binary", "version": null, "path": null, "min_version": null,
       "debian_package": "postgresql-client", "problem": "not found"}
debian_packages:
  description: The Debian packages that provide what is missing, each once, sorted.
  returned: always
  type: list
  elements: str
  sample: ["postgresql-client", "python3-psycopg"]
interpreter:
  description: The Python interpreter that ran this module, where the Python modules were looked for.
  returned: always
  type: dict
  contains:
    executable:
      description: Its path (C(sys.executable)).
      type: str
      sample: /usr/bin/python3
    version:
      description: Its version.
      type: str
      sample: 3.11.2
msg:
  description: One line saying what is missing, or that nothing is.
  returned: always
  type: str
  sample: "Missing for the payments.deploy modules on this host (Python 3.11.2 at /usr/bin/python3): Python module psycopg: not found
    (Debian package python3-psycopg). Install with: apt-get install python3-psycopg"
"""

import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys
import typing as t

from ansible.module_utils.basic import AnsibleModule

KNOWN_DEBIAN_PACKAGES = {
    "boto3": "python3-boto3",
    "botocore": "python3-botocore",
    "cryptography": "python3-cryptography",
    "haproxy": "haproxy",
    "minisign": "minisign",
    "pg_dump": "postgresql-client",
    "pg_restore": "postgresql-client",
    "promtool": "prometheus",
    "psql": "postgresql-client",
    "psycopg": "python3-psycopg",
    "redis": "python3-redis",
    "requests": "python3-requests",
    "stripe": "python3-stripe",
    "supervisorctl": "supervisor",
    "yaml": "python3-yaml",
    "zstandard": "python3-zstandard",
}
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
LEADING_VERSION = re.compile(r"\d+(?:\.\d+)*")
PRINTED_VERSION = re.compile(r"(?<![\w.])(\d+(?:\.\d+)+)")
SBIN_DIRS = ["/sbin", "/usr/sbin", "/usr/local/sbin"]
VERSION_TIMEOUT = 15


def version_key(version: str) -> tuple[int, ...] | None:
    """``'2.6.12-1+deb12u4'`` -> ``(2, 6, 12)``; None when the text does not start with a number (after a ``v``)."""
    match = LEADING_VERSION.match(version.strip().lstrip("vV"))
    return tuple(int(part) for part in match.group(0).split(".")) if match else None


def older_than(version: str, minimum: str) -> bool:
    have, want = version_key(version), version_key(minimum)
    if have is None or want is None:
        raise ValueError(f"cannot compare {version!r} with {minimum!r}")
    width = max(len(have), len(want))
    return have + (0,) * (width - len(have)) < want + (0,) * (width - len(want))


def distribution_version(module_name: str) -> str | None:
    """The version of the distribution that ships the top-level package of ``module_name``, without importing it."""
    top = module_name.split(".")[0]
    try:
        return importlib.metadata.version(top)
    except importlib.metadata.PackageNotFoundError:
        pass
    packages_distributions = getattr(importlib.metadata, "packages_distributions", None)  # Python 3.10 and later
    if packages_distributions is None:
        return None
    for distribution in packages_distributions().get(top, []):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def find_python_module(name: str) -> tuple[str | None, str | None, str | None]:
    """``(path, version, problem)`` of one Python module; problem is None when it was found."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        return None, None, f"not found ({type(exc).__name__}: {exc})"
    if spec is None:
        return None, None, "not found"
    path = spec.origin if spec.origin not in (None, "namespace") else None
    if path is None and spec.submodule_search_locations:
        path = list(spec.submodule_search_locations)[0]
    return path, distribution_version(name), None


def program_version(path: str) -> str | None:
    """The first dotted number that ``PROGRAM --version`` prints (on stdout, else on stderr), or None."""
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, errors="replace", check=False,  # pylint: disable=ansible-bad-function
                              stdin=subprocess.DEVNULL, timeout=VERSION_TIMEOUT, env=dict(os.environ, LC_ALL="C"))
    except (OSError, subprocess.SubprocessError):
        return None
    for text in (proc.stdout, proc.stderr):
        match = PRINTED_VERSION.search(text)
        if match:
            return match.group(1)
    return None


def find_binary(module: AnsibleModule, name: str) -> str | None:
    if os.path.isabs(name):
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return module.get_bin_path(name, required=False, opt_dirs=SBIN_DIRS)


def option_problems(params: dict[str, t.Any]) -> list[str]:
    problems = []
    for name in params["python_modules"]:
        if not MODULE_NAME.match(name):
            problems.append(f"python_modules: {name!r} is not a Python import name")
    for name in params["binaries"]:
        if not name or ("/" in name and not os.path.isabs(name)) or name.endswith("/"):
            problems.append(f"binaries: {name!r} is neither a program name nor an absolute path")
    asked = set(params["python_modules"]) | set(params["binaries"])
    for name, minimum in params["min_versions"].items():
        if name not in asked:
            problems.append(f"min_versions: {name!r} is in neither python_modules nor binaries")
        if version_key(str(minimum)) is None:
            problems.append(f"min_versions: {name}: {minimum!r} is not a version (it must start with a number)")
    for name, package in params["debian_packages"].items():
        if not isinstance(package, str) or not re.match(r"^[a-z0-9][a-z0-9+.-]+$", package):
            problems.append(f"debian_packages: {name}: {package!r} is not a Debian package name")
    return problems


def judge(item: dict[str, t.Any], problem: str | None) -> str | None:
    """The problem of an item that was looked for (``problem``: None when it was found): not found, version unknown
    while a minimum is set, or too old."""
    if problem is not None:
        return problem
    minimum = item["min_version"]
    if minimum is None:
        return None
    if item["version"] is None or version_key(item["version"]) is None:
        return f"version unknown, {minimum} or later needed"
    if older_than(item["version"], minimum):
        return f"version {item['version']} is older than {minimum}"
    return None


def describe(item: dict[str, t.Any]) -> str:
    kind = "Python module" if item["kind"] == "python_module" else "program"
    package = f"Debian package {item['debian_package']}" if item["debian_package"] else "no known Debian package"
    return f"{kind} {item['name']}: {item['problem']} ({package})"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "python_modules": {"type": "list", "elements": "str", "default": []},
            "binaries": {"type": "list", "elements": "str", "default": []},
            "min_versions": {"type": "dict", "default": {}},
            "debian_packages": {"type": "dict", "default": {}},
            "fail_on_missing": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    interpreter = {"executable": sys.executable, "version": platform.python_version()}
    problems = option_problems(params)
    if problems:
        module.fail_json(msg="; ".join(problems), present=[], missing=[], debian_packages=[], interpreter=interpreter)

    packages = dict(KNOWN_DEBIAN_PACKAGES, **params["debian_packages"])
    minimums = {name: str(minimum) for name, minimum in params["min_versions"].items()}
    present: list[dict[str, t.Any]] = []
    missing: list[dict[str, t.Any]] = []
    asked = [("python_module", name) for name in dict.fromkeys(params["python_modules"])]
    asked += [("binary", name) for name in dict.fromkeys(params["binaries"])]
    for kind, name in asked:
        item: dict[str, t.Any] = {"name": name, "kind": kind, "version": None, "path": None,
                                  "min_version": minimums.get(name), "debian_package": packages.get(os.path.basename(name))}
        if kind == "python_module":
            item["path"], item["version"], problem = find_python_module(name)
        else:
            item["path"] = find_binary(module, name)
            problem = None if item["path"] else "not found"
            if item["path"] and item["min_version"] is not None:
                item["version"] = program_version(item["path"])
        item["problem"] = judge(item, problem)
        if item["problem"] is None:
            del item["problem"]
            present.append(item)
        else:
            missing.append(item)

    debian = sorted({item["debian_package"] for item in missing if item["debian_package"]})
    where = f"on this host (Python {interpreter['version']} at {interpreter['executable']})"
    if missing:
        msg = f"Missing for the payments.deploy modules {where}: " + "; ".join(describe(item) for item in missing) + "."
        if debian:
            msg += " Install with: apt-get install " + " ".join(debian)
    else:
        msg = f"Everything needed is present {where}: {len(present)} checked."
    result = {"changed": False, "present": present, "missing": missing, "debian_packages": debian,
              "interpreter": interpreter, "msg": msg}
    if missing and params["fail_on_missing"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

"""Load the bad-input corpus (cases/<module>.yml) and run one case of it in-process.

A case file holds a module's ``base`` arguments (valid ones, pointing at a local listener), the files every case
starts from (``setup``) and the ``cases``: each overrides or removes arguments, may add files, and names the text
the failure message must hold (``expect``: the option). Strings may use ``@TMP@`` (the case's directory), ``@PORT@``
(a TCP listener that records connections), ``@SOCK@`` (a unix socket listener, inside the directory) and ``@HUGE@``
(a value of a million characters), ``@USER@`` and ``@GROUP@`` (the user and group the tests run as). Every file a case
builds adds ``@SHA256:<its path>@`` (its sha256) to the markers of the arguments.
"""

from __future__ import annotations

import contextlib
import copy
import grp
import hashlib
import io
import json
import os
import pwd
import socket
import tarfile
import threading
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from ansible.module_utils.testing import patch_module_args

CASES_DIR = Path(__file__).with_name("cases")
MODULES_DIR = Path(__file__).resolve().parents[3] / "plugins" / "modules"
HUGE = "x" * 1_000_000
# Where the modules would otherwise find a secret the case does not pass.
SECRET_ENV = ("STRIPE_SECRET_KEY", "ENCRYPTION_KEY", "PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
              "AWS_SESSION_TOKEN", "PGSERVICE", "PGHOST", "PGPORT", "PGDATABASE")


@dataclass
class Case:
    module: str
    id: str
    args: dict[str, t.Any]
    expect: str | None
    setup: list[dict[str, t.Any]] = field(default_factory=list)
    xfail_reason: str | None = None
    base: bool = False
    base_expect: dict[str, t.Any] = field(default_factory=dict)


def module_names() -> list[str]:
    return sorted(p.stem for p in MODULES_DIR.glob("*.py") if not p.name.startswith("_"))


def load_file(path: Path) -> dict[str, t.Any]:
    data: dict[str, t.Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def load_cases() -> list[Case]:
    """Every module case of the corpus, plus one ``base`` case per module (its valid arguments)."""
    cases = []
    for path in sorted(CASES_DIR.glob("*.yml")):
        if path.stem == "preflight":
            continue
        data = load_file(path)
        module = data["module"]
        base_setup = data.get("setup") or []
        cases.append(Case(module, "base", copy.deepcopy(data["base"]), None, list(base_setup), base=True,
                          base_expect=data["base_expect"]))
        for raw in data["cases"]:
            args = copy.deepcopy(data["base"])
            for key in raw.get("remove", []):
                args.pop(key, None)
            args.update(copy.deepcopy(raw.get("args") or {}))
            cases.append(Case(module, raw["id"], args, raw["expect"], list(base_setup) + list(raw.get("setup") or []),
                              raw.get("xfail_reason")))
    return cases


def substitute(value: t.Any, where: dict[str, str]) -> t.Any:
    if isinstance(value, str):
        for marker, text in {**where, "@HUGE@": HUGE, "@USER@": pwd.getpwuid(os.geteuid()).pw_name,
                             "@GROUP@": grp.getgrgid(os.getegid()).gr_name}.items():
            value = value.replace(marker, text)
        return value
    if isinstance(value, list):
        return [substitute(v, where) for v in value]
    if isinstance(value, dict):
        return {substitute(k, where): substitute(v, where) for k, v in value.items()}
    return value


TAR_TYPES = {"dir": tarfile.DIRTYPE, "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE}


def add_member(archive: tarfile.TarFile, member: dict[str, t.Any]) -> None:
    """One tar member: a file (``text``, ``mode``), a ``symlink`` or ``hardlink`` (its target), or a ``type``."""
    info = tarfile.TarInfo(member["name"])
    info.mode = int(str(member.get("mode", "0644")), 8)  # an octal string, as in Ansible
    if "symlink" in member:
        info.type, info.linkname = tarfile.SYMTYPE, member["symlink"]
    elif "hardlink" in member:
        info.type, info.linkname = tarfile.LNKTYPE, member["hardlink"]
    elif "type" in member:
        info.type = TAR_TYPES[member["type"]]
    else:
        data = member.get("text", "").encode()
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        return
    archive.addfile(info)


def build(root: Path, entries: list[dict[str, t.Any]], where: dict[str, str]) -> None:
    """Create the files of a case: text, JSON, directories, symlinks and tar archives; ``remove`` deletes one.

    ``where`` gains the ``@SHA256:<path>@`` marker of every file built, for the arguments substituted next.
    """
    for raw in entries:
        entry = substitute(raw, where)  # one at a time: an entry may name the sha256 of one built before it
        path = root / entry["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.get("remove"):
            path.unlink()
        elif entry.get("dir"):
            path.mkdir(exist_ok=True)
        elif "symlink" in entry:
            path.symlink_to(entry["symlink"])
        elif "json" in entry:
            path.write_text(json.dumps(entry["json"]), encoding="utf-8")
        elif "tar" in entry:
            with tarfile.open(path, "w:gz") as archive:
                for member in entry["tar"]:
                    add_member(archive, member)
        else:
            path.write_text(entry.get("text", ""), encoding="utf-8", newline="")
        if path.is_file() and not path.is_symlink():
            where[f"@SHA256:{entry['path']}@"] = hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with its mode, size and modification time (symlinks not followed)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            info = os.lstat(os.path.join(directory, name))
            found[os.path.relpath(os.path.join(directory, name), root)] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return found


class Listener:
    """A socket that accepts, counts and closes every connection: the place a failing case must never reach."""

    def __init__(self, family: int, address: t.Any) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(64)
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def import_module(name: str) -> t.Any:
    import importlib  # pylint: disable=import-outside-toplevel

    return importlib.import_module(f"ansible_collections.payments.deploy.plugins.modules.{name}")


def run_module(name: str, args: dict[str, t.Any], capsys: pytest.CaptureFixture[str]) -> dict[str, t.Any]:
    """The module's result as Ansible would read it: its main() runs in-process and prints JSON before exiting."""
    module = import_module(name)
    capsys.readouterr()
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    out = capsys.readouterr().out
    result: dict[str, t.Any] = json.loads(out)
    return result

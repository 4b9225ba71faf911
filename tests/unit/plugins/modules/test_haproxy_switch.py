"""Unit tests of haproxy_switch, haproxy_switch_info and their runtime API client.

The modules run in-process against a fake admin socket (a unix socket server thread speaking
HAProxy's runtime API text protocol), so their real socket code runs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _files
from ansible_collections.payments.deploy.plugins.module_utils._haproxy import (
    HAProxyRuntime,
    HAProxyRuntimeError,
    backend_name,
    backend_pattern,
    parse_map_text,
    parse_show_map,
    parse_show_stat,
    replace_map_value,
    servers_of,
    write_map_file,
    write_text_atomic,
)
from ansible_collections.payments.deploy.plugins.module_utils import _haproxy
from ansible_collections.payments.deploy.plugins.modules import haproxy_switch, haproxy_switch_info

STAT_HEADER = "# pxname,svname,qcur,qmax,scur,status,weight,check_status,check_code,"


class FakeHAProxy:
    """A unix socket server answering runtime API commands like HAProxy 2.6 does (one command per connection)."""

    def __init__(self, directory: Path, map_file: Path, servers: dict[str, dict[str, str]]) -> None:
        self.path = str(directory / "admin.sock")
        self.map_file = str(map_file)
        self.maps: dict[str, list[list[str]]] = {self.map_file: [line.split(None, 1) for line in map_file.read_text().splitlines()]}
        self.servers = servers
        self.received: list[str] = []
        self.on_command: t.Callable[[str], None] | None = None
        self.reject_writes = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(16)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the server thread
        self._sock.close()
        self._thread.join(timeout=5)

    def value(self, key: str) -> str | None:
        return next((v for k, v in self.maps[self.map_file] if k == key), None)

    def writes(self) -> list[str]:
        return [c for c in self.received if c.startswith(("set ", "add ", "del "))]

    def _serve(self) -> None:
        while True:
            try:
                conn = self._sock.accept()[0]
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                command = data.decode().strip()
                self.received.append(command)
                if self.on_command:
                    self.on_command(command)
                conn.sendall(self.answer(command).encode())

    def answer(self, command: str) -> str:
        words = command.split()
        unknown_map = "Unknown map identifier. Please use #<id> or <file>.\n\n"
        if words[:2] == ["show", "stat"]:
            rows = [STAT_HEADER]
            for backend, servers in self.servers.items():
                rows += [f"{backend},{name},0,0,0,{status},1,L7OK,200," for name, status in servers.items()]
                rows.append(f"{backend},BACKEND,0,0,0,UP,2,,,")
            return "\n".join(rows) + "\n\n"
        if words[:2] in (["show", "map"], ["set", "map"], ["add", "map"], ["del", "map"]) and len(words) >= 3:
            entries = self.maps.get(words[2])
            if entries is None:
                return unknown_map
            if words[0] == "show":
                return "".join(f"0x55d0c1{i:06x} {k} {v}\n" for i, (k, v) in enumerate(entries)) + "\n"
            if self.reject_writes:
                return "Permission denied\n\n"
            if words[0] == "set":
                hits = [e for e in entries if e[0] == words[3]]
                for entry in hits:
                    entry[1] = words[4]
                return "\n" if hits else "entry not found.\n\n"
            if words[0] == "add":
                entries.append([words[3], words[4]])
                return "\n"
            before = len(entries)
            entries[:] = [e for e in entries if e[0] != words[3]]
            return "\n" if len(entries) < before else "Key not found.\n\n"
        return "Unknown command, but maybe one of the following ones is a better match:\n  help : list commands\n\n"


@pytest.fixture
def lab() -> t.Iterator[FakeHAProxy]:
    directory = Path(tempfile.mkdtemp(prefix="hx-"))  # short: unix socket paths are limited to 107 bytes
    map_file = directory / "colours.map"
    map_file.write_text("production blue\nstaging green\n")
    map_file.chmod(0o640)
    fake = FakeHAProxy(directory, map_file, {
        "production_blue": {"app1": "UP", "app2": "UP"},
        "production_green": {"app1": "UP", "app2": "UP"},
    })
    yield fake
    fake.close()
    shutil.rmtree(directory)


def run(module: t.Any, capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], check: bool = False, diff: bool = False) -> dict[str, t.Any]:
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def switch_args(lab: FakeHAProxy, **extra: t.Any) -> dict[str, t.Any]:
    return {"admin_socket": lab.path, "map_file": lab.map_file, "key": "production", "colour": "green", **extra}


def warnings(result: dict[str, t.Any]) -> list[str]:
    """Warning texts of a module result (ansible-core >= 2.19 wraps each one in a WarningSummary)."""
    return [w if isinstance(w, str) else w["event"]["msg"] for w in result.get("warnings", [])]


def file_value(lab: FakeHAProxy, key: str = "production") -> str | None:
    return parse_map_text(Path(lab.map_file).read_text()).get(key)


# --- haproxy_switch -------------------------------------------------------------------------------------


def test_already_on_colour_is_unchanged(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(haproxy_switch, capsys, switch_args(lab, colour="blue"), diff=True)
    assert result["changed"] is False
    assert result["previous_colour"] == result["colour"] == "blue"
    assert result["switched_at"] is None
    assert result["persisted"] is True
    assert "diff" not in result
    assert lab.writes() == []


def test_switch_changes_runtime_then_file(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(haproxy_switch, capsys, switch_args(lab), diff=True)
    assert result["changed"] is True
    assert result["previous_colour"] == "blue"
    assert result["colour"] == "green"
    assert result["backend"] == "production_green"
    assert result["backend_servers"] == {"app1": "UP", "app2": "UP"}
    assert isinstance(result["switched_at"], float)
    assert result["persisted"] is True
    assert result["diff"] == {
        "before": "production: blue\n",
        "after": "production: green\n",
        "before_header": lab.map_file,
        "after_header": lab.map_file,
    }
    assert lab.value("production") == "green"
    assert lab.writes() == [f"set map {lab.map_file} production green"]
    assert f"set map {lab.map_file} production green" in result["commands"]
    # the file is rewritten, keeping the other keys and its mode
    assert Path(lab.map_file).read_text() == "production green\nstaging green\n"
    assert stat.S_IMODE(os.stat(lab.map_file).st_mode) == 0o640
    assert not [p for p in os.listdir(os.path.dirname(lab.map_file)) if p.endswith(".tmp")]

    again = run(haproxy_switch, capsys, switch_args(lab))
    assert again["changed"] is False
    assert again["switched_at"] is None


def test_check_mode_changes_nothing(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    before = Path(lab.map_file).read_text()
    result = run(haproxy_switch, capsys, switch_args(lab), check=True, diff=True)
    assert result["changed"] is True
    assert result["diff"]["after"] == "production: green\n"
    assert result["switched_at"] is None
    assert lab.writes() == []
    assert lab.value("production") == "blue"
    assert Path(lab.map_file).read_text() == before


def test_check_mode_still_gates_on_backend_health(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    lab.servers["production_green"]["app2"] = "DOWN"
    result = run(haproxy_switch, capsys, switch_args(lab, wait_timeout=0), check=True)
    assert result["failed"] is True
    assert "app2" in result["msg"]


def test_colour_outside_allowed_fails_before_anything(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(haproxy_switch, capsys, switch_args(lab, colour="purple"))
    assert result["failed"] is True
    assert "'purple' is not one of allowed_colours" in result["msg"]
    assert lab.received == []


def test_unsafe_names_fail_before_anything(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(haproxy_switch, capsys, switch_args(lab, key="production;clear", colour="green;x", allowed_colours=["green;x"]))
    assert result["failed"] is True
    assert "key 'production;clear'" in result["msg"] and "colour 'green;x'" in result["msg"]
    assert lab.received == []


def test_down_server_fails_and_changes_nothing(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    lab.servers["production_green"]["app2"] = "DOWN"
    lab.servers["production_green"]["app1"] = "UP 1/2"
    before = Path(lab.map_file).read_text()
    result = run(haproxy_switch, capsys, switch_args(lab, wait_timeout=0.3))
    assert result["failed"] is True
    assert "production_green" in result["msg"]
    assert "'app2': 'DOWN'" in result["msg"] and "'app1': 'UP 1/2'" in result["msg"]
    assert "nothing changed" in result["msg"]
    assert result["backend_servers"] == {"app1": "UP 1/2", "app2": "DOWN"}
    assert lab.writes() == []
    assert lab.value("production") == "blue"
    assert Path(lab.map_file).read_text() == before


def test_waits_for_servers_to_come_up(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    lab.servers["production_green"]["app2"] = "DOWN 1/2"
    polls: list[str] = []

    def come_up(command: str) -> None:
        if command == "show stat":
            polls.append(command)
            if len(polls) == 3:
                lab.servers["production_green"]["app2"] = "UP"

    lab.on_command = come_up
    result = run(haproxy_switch, capsys, switch_args(lab, wait_timeout=10))
    assert result["changed"] is True
    assert len(polls) == 3
    assert result["commands"].count("show stat") == 1  # polling is listed once
    assert lab.value("production") == "green"


def test_unknown_backend_fails_even_without_health_gate(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(haproxy_switch, capsys, switch_args(lab, colour="red", allowed_colours=["red"], require_backend_up=False))
    assert result["failed"] is True
    assert "backend production_red is not known to HAProxy" in result["msg"]
    assert lab.writes() == []


def test_file_write_failure_rolls_back_runtime(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(path: str, text: str) -> None:
        raise OSError(30, "Read-only file system", path)

    monkeypatch.setattr(_haproxy, "write_text_atomic", read_only)
    result = run(haproxy_switch, capsys, switch_args(lab))
    assert result["failed"] is True
    assert "could not write map file" in result["msg"]
    assert "Read-only file system" in result["msg"]
    assert "set the runtime value back to blue" in result["msg"]
    assert lab.writes() == [f"set map {lab.map_file} production green", f"set map {lab.map_file} production blue"]
    assert lab.value("production") == "blue"
    assert file_value(lab) == "blue"


def test_absent_key_is_added_and_rolled_back_by_delete(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    lab.servers["canary_green"] = {"app1": "UP"}

    def disk_full(path: str, text: str) -> None:
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(_haproxy, "write_text_atomic", disk_full)
    result = run(haproxy_switch, capsys, switch_args(lab, key="canary"))
    assert result["failed"] is True
    assert lab.writes() == [f"add map {lab.map_file} canary green", f"del map {lab.map_file} canary"]
    assert lab.value("canary") is None
    monkeypatch.undo()

    result = run(haproxy_switch, capsys, switch_args(lab, key="canary"), diff=True)
    assert result["changed"] is True
    assert result["previous_colour"] is None
    assert result["diff"]["before"] == ""
    assert lab.value("canary") == "green"
    assert file_value(lab, "canary") == "green"


def test_runtime_rejection_reports_command_and_answer(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    lab.reject_writes = True
    result = run(haproxy_switch, capsys, switch_args(lab))
    assert result["failed"] is True
    assert result["command"] == f"set map {lab.map_file} production green"
    assert result["answer"].strip() == "Permission denied"
    assert "Permission denied" in result["msg"]
    assert file_value(lab) == "blue"


def test_drifted_file_is_reported_and_fixed(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    Path(lab.map_file).write_text("# routing\nproduction blue\nstaging green\n")
    lab.maps[lab.map_file][0][1] = "green"  # runtime already green, file still blue
    result = run(haproxy_switch, capsys, switch_args(lab), diff=True)
    assert result["changed"] is True
    assert result["switched_at"] is None
    assert result["map_file_colour"] == "blue"
    assert any("on disk routes 'production' to 'blue'" in w for w in warnings(result))
    assert result["diff"]["before"] == "production: green\nproduction (map file on disk): blue\n"
    assert lab.writes() == []
    assert Path(lab.map_file).read_text() == "# routing\nproduction green\nstaging green\n"


def test_drift_without_persist_only_warns(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    lab.maps[lab.map_file][0][1] = "green"
    result = run(haproxy_switch, capsys, switch_args(lab, persist=False))
    assert result["changed"] is False
    assert result["persisted"] is False
    assert any("persist=false leaves the file" in w for w in warnings(result))
    assert file_value(lab) == "blue"


def test_missing_map_file_is_rebuilt_from_runtime(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    os.unlink(lab.map_file)
    result = run(haproxy_switch, capsys, switch_args(lab))
    assert result["changed"] is True
    assert result["map_file_colour"] is None
    assert any("does not exist" in w for w in warnings(result))
    assert Path(lab.map_file).read_text() == "production green\nstaging green\n"


def test_persist_false_changes_only_runtime(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(haproxy_switch, capsys, switch_args(lab, persist=False))
    assert result["changed"] is True
    assert result["persisted"] is False
    assert lab.value("production") == "green"
    assert file_value(lab) == "blue"


def test_missing_socket_gives_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    map_file = tmp_path / "colours.map"
    map_file.write_text("production blue\n")
    args = {"admin_socket": str(tmp_path / "nope.sock"), "map_file": str(map_file), "key": "production", "colour": "green"}
    result = run(haproxy_switch, capsys, args)
    assert result["failed"] is True
    assert f"admin socket {tmp_path / 'nope.sock'} does not exist" in result["msg"]
    assert f"show map {map_file}" in result["msg"]


def test_unknown_map_reports_haproxy_answer(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(haproxy_switch, capsys, switch_args(lab, map_file="/etc/haproxy/other.map"))
    assert result["failed"] is True
    assert "Unknown map identifier" in result["msg"]
    assert result["command"] == "show map /etc/haproxy/other.map"


# --- haproxy_switch_info --------------------------------------------------------------------------------


def test_info_reports_colours_and_backends(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    lab.servers["production_green"]["app2"] = "DOWN"
    lab.servers["production_eu_blue"] = {"app1": "UP"}
    result = run(haproxy_switch_info, capsys, {"admin_socket": lab.path, "map_file": lab.map_file}, check=True)
    assert result["changed"] is False
    assert result["colours"] == {"production": "blue", "staging": "green"}
    assert result["file_colours"] == result["colours"]
    assert result["in_sync"] is True
    assert result["backends"]["production"] == {
        "blue": {"backend": "production_blue", "servers": {"app1": "UP", "app2": "UP"}, "all_up": True},
        "green": {"backend": "production_green", "servers": {"app1": "UP", "app2": "DOWN"}, "all_up": False},
    }
    assert "eu_blue" not in result["backends"]["production"]  # production_eu_blue is another key's backend
    assert result["backends"]["staging"] == {}
    assert lab.writes() == []


def test_info_for_one_key(lab: FakeHAProxy, capsys: pytest.CaptureFixture[str]) -> None:
    lab.maps[lab.map_file][0][1] = "green"
    result = run(haproxy_switch_info, capsys, {"admin_socket": lab.path, "map_file": lab.map_file, "key": "production"})
    assert result["colours"] == {"production": "green"}
    assert result["file_colours"] == {"production": "blue"}
    assert result["in_sync"] is False
    assert set(result["backends"]) == {"production"}


# --- the client and parsers ------------------------------------------------------------------------------


def test_parse_show_map() -> None:
    text = "0x55b33bf716d0 production blue\n0x55b33bf71760 staging green\n0x7f82cc047be0 production red\n\n"
    assert parse_show_map(text) == {"production": "blue", "staging": "green"}
    assert parse_show_map("\n") == {}
    with pytest.raises(ValueError):
        parse_show_map("Unknown map identifier. Please use #<id> or <file>.\n")


def test_parse_show_stat() -> None:
    text = (
        "# pxname,svname,qcur,status,check_status,addr,\n"
        "production,FRONTEND,,OPEN,,,\n"
        "production_blue,app1,0,UP,L7OK,127.0.0.1:8001,\n"
        "production_blue,app2,0,DOWN,L4CON,127.0.0.1:8002,\n"
        "production_blue,BACKEND,0,UP,,,\n\n"
    )
    rows = parse_show_stat(text)
    assert rows[1] == {"pxname": "production_blue", "svname": "app1", "qcur": "0", "status": "UP", "check_status": "L7OK",
                       "addr": "127.0.0.1:8001"}
    assert servers_of(rows, "production_blue") == {"app1": "UP", "app2": "DOWN"}
    assert servers_of(rows, "production_green") is None
    with pytest.raises(ValueError):
        parse_show_stat("Permission denied\n")


def test_map_file_text_helpers() -> None:
    text = "# colours\nproduction blue\n\nstaging   green\n"
    assert parse_map_text(text) == {"production": "blue", "staging": "green"}
    assert replace_map_value(text, "staging", "blue") == "# colours\nproduction blue\n\nstaging blue\n"
    assert replace_map_value(text, "canary", "green").endswith("staging   green\ncanary green\n")
    assert replace_map_value("# production blue\n", "production", "green") == "# production blue\nproduction green\n"


def test_write_map_file_is_atomic_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "colours.map"
    path.write_text("production blue\n")
    path.chmod(0o600)
    write_map_file(str(path), {"production": "green", "staging": "blue"})
    assert path.read_text() == "production green\nstaging blue\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    new = tmp_path / "new.map"
    write_text_atomic(str(new), "a b\n")
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["colours.map", "new.map"]


def test_failed_write_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "colours.map"
    path.write_text("production blue\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_files.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_text_atomic(str(path), "production green\n")
    assert path.read_text() == "production blue\n"
    assert [p.name for p in tmp_path.iterdir()] == ["colours.map"]


def test_client_errors_carry_command_and_answer(lab: FakeHAProxy) -> None:
    runtime = HAProxyRuntime(lab.path, timeout=2)
    with pytest.raises(HAProxyRuntimeError) as exc:
        runtime.command("show bogus")
    assert exc.value.command == "show bogus"
    assert exc.value.answer is not None and exc.value.answer.startswith("Unknown command")
    assert "HAProxy answered: 'Unknown command" in str(exc.value)
    with pytest.raises(HAProxyRuntimeError, match="entry not found"):
        runtime.set_map_value(lab.map_file, "absent", "green")
    with pytest.raises(HAProxyRuntimeError, match="line break"):
        runtime.command("show stat\nclear map x")
    assert runtime.backend_servers("production_blue") == {"app1": "UP", "app2": "UP"}


def test_client_times_out(tmp_path: Path) -> None:
    directory = Path(tempfile.mkdtemp(prefix="hx-"))
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(directory / "silent.sock"))
    silent.listen(1)
    try:
        with pytest.raises(HAProxyRuntimeError, match="no complete answer"):
            HAProxyRuntime(str(directory / "silent.sock"), timeout=0.2).command("show info")
    finally:
        silent.close()
        shutil.rmtree(directory)


def test_backend_templates() -> None:
    assert backend_name("{key}_{colour}", "production", "green") == "production_green"
    assert backend_name("be_{key}_{colour}", "staging", "blue") == "be_staging_blue"
    with pytest.raises(ValueError, match="backend_template"):
        backend_name("{env}_{colour}", "production", "green")
    match = backend_pattern("be_{key}.{colour}", "production").match("be_production.green")
    assert match and match.group("colour") == "green"
    assert backend_pattern("be_{key}.{colour}", "production").match("be_productionXgreen") is None


# --- values read back from HAProxy, templates and numbers are checked like inputs -------------------------

INJECTED = "blue; shutdown sessions server production_blue/app1"


def test_an_unsafe_value_served_by_haproxy_is_never_sent_back(
        lab: FakeHAProxy, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    lab.maps[lab.map_file][0][1] = INJECTED  # what `show map` answers once a map file line held it and HAProxy reloaded

    def read_only(path: str, text: str) -> None:
        raise OSError(30, "Read-only file system", path)

    monkeypatch.setattr(_haproxy, "write_text_atomic", read_only)  # a failed write would send the old value back
    result = run(haproxy_switch, capsys, switch_args(lab))
    assert result["failed"] is True
    assert "refusing to switch production" in result["msg"] and "not a plain colour" in result["msg"]
    assert lab.writes() == []
    assert lab.value("production") == INJECTED


def test_restore_refuses_a_value_that_is_not_a_plain_word(lab: FakeHAProxy) -> None:
    runtime = HAProxyRuntime(lab.path)
    restored, how = _haproxy.restore_runtime_value(runtime, lab.map_file, "production", INJECTED)
    assert restored is False and "refusing to set the runtime value back" in how
    assert runtime.commands == [] and lab.received == []
    assert _haproxy.restore_runtime_value(runtime, lab.map_file, "production", "green")[0] is True
    assert lab.writes() == [f"set map {lab.map_file} production green"]


@pytest.mark.parametrize("template", ["{key.foo}_{colour}", "{key[x]}_{colour}", "{key:>999999999}_{colour}",
                                      "{key!r}_{colour}", "{key}_{colour:.3}", "{}_{colour}", "{0}", "{key}", "{key"])
def test_backend_template_allows_only_plain_key_and_colour(template: str, lab: FakeHAProxy,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="backend_template"):
        backend_name(template, "production", "green")
    for module, args in ((haproxy_switch, switch_args(lab, backend_template=template)),
                         (haproxy_switch_info, {"admin_socket": lab.path, "map_file": lab.map_file,
                                                "backend_template": template})):
        result = run(module, capsys, args)
        assert result["failed"] is True and "backend_template" in result["msg"]
        assert result["commands"] == []
    assert lab.received == []


@pytest.mark.parametrize("option, value", [("socket_timeout", "nan"), ("socket_timeout", "inf"), ("socket_timeout", 0),
                                           ("wait_timeout", "nan"), ("wait_timeout", "inf"), ("wait_timeout", -1)])
def test_numbers_must_be_finite_and_in_range(option: str, value: t.Any, lab: FakeHAProxy,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    result = run(haproxy_switch, capsys, switch_args(lab, **{option: value}))
    assert result["failed"] is True and f"{option} must be" in result["msg"] and "finite" in result["msg"]
    assert lab.received == []


def test_names_with_a_trailing_newline_are_refused() -> None:
    assert _haproxy.check_name("colour", "green\n") is not None
    assert _haproxy.check_name("colour", "green") is None
    assert backend_pattern("{key}_{colour}", "production").match("production_green\n") is None

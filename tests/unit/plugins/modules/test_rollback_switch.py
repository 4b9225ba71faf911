"""Unit tests of rollback_switch: bad inputs and bad journals fail before anything is locked or sent to HAProxy,
and the pieces it is built from (journal plan, server verdicts, addresses). The module runs in-process against real
files; the flip itself is tested against a real HAProxy in tests/integration/haproxy/test_rollback_switch.py."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils._rollback_checks import judge, split_addr
from ansible_collections.payments.deploy.plugins.module_utils._rollback_plan import PlanError, load_plan
from ansible_collections.payments.deploy.plugins.modules import rollback_switch

RECORD = {"kind": "deploy", "environment": "production", "colour_from": "blue", "release_from": "1.0.0",
          "colour_to": "green", "release_to": "1.1.0", "app_hosts": ["app1", "app2"]}


class World:
    """A journal directory with a record, a map file, and a unix socket nobody answers (so any command would fail)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal_dir = root / "journal"
        self.record_file = self.journal_dir / "production" / "last-deploy.json"
        self.record_file.parent.mkdir(parents=True)
        self.record_file.write_text(json.dumps(RECORD))
        self.map_file = root / "colours.map"
        self.map_file.write_text("production green\n")
        self.socket_path = str(root / "admin.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.socket_path)

    def args(self, **extra: t.Any) -> dict[str, t.Any]:
        return {"environment": "production", "journal_dir": str(self.journal_dir), "admin_socket": self.socket_path,
                "map_file": str(self.map_file), **extra}


@pytest.fixture
def world() -> t.Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="rb-"))  # short: unix socket paths are limited to 107 bytes
    made = World(root)
    yield made
    made.sock.close()
    shutil.rmtree(root)


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any]) -> dict[str, t.Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        rollback_switch.main()
    return json.loads(capsys.readouterr().out)


def write_record(world: World, content: str | bytes) -> None:
    if isinstance(content, bytes):
        world.record_file.write_bytes(content)
    else:
        world.record_file.write_text(content)


# (id, how to break the world or the arguments, what the message must say)
BAD_INPUTS: list[tuple[str, t.Callable[[World], dict[str, t.Any]], str]] = [
    ("relative journal_dir", lambda w: w.args(journal_dir="journal"), "journal_dir 'journal' must be an absolute path"),
    ("missing journal_dir", lambda w: w.args(journal_dir=str(w.root / "nope")), "is not a directory on this host"),
    ("no journal record", lambda w: (w.record_file.unlink(), w.args())[1], "nothing to roll back to"),
    ("corrupt journal", lambda w: (write_record(w, '{"kind": "deploy", '), w.args())[1], "is corrupt: it is not JSON"),
    ("journal not an object", lambda w: (write_record(w, "[1, 2]"), w.args())[1], "holds a JSON list, not an object"),
    ("journal not UTF-8", lambda w: (write_record(w, b"\xff\xfe{}"), w.args())[1], "is corrupt: it is not UTF-8"),
    ("record of another environment", lambda w: (write_record(w, json.dumps(dict(RECORD, environment="staging"))),
                                                 w.args())[1], "is for environment 'staging', not 'production'"),
    ("first deploy", lambda w: (write_record(w, json.dumps(dict(RECORD, release_from=""))), w.args())[1],
     "replaced no live release"),
    ("colour not blue/green", lambda w: (write_record(w, json.dumps(dict(RECORD, colour_from="purple"))), w.args())[1],
     "colour_from 'purple' is not one of ['blue', 'green']"),
    ("same colour twice", lambda w: (write_record(w, json.dumps(dict(RECORD, colour_from="green"))), w.args())[1],
     "colour_from and colour_to are both 'green'"),
    ("missing admin socket", lambda w: w.args(admin_socket=str(w.root / "gone.sock")), "No such file or directory"),
    ("admin socket not a socket", lambda w: w.args(admin_socket=str(w.map_file)), "is not a unix socket"),
    ("relative admin socket", lambda w: w.args(admin_socket="admin.sock"),
     "admin_socket 'admin.sock' must be an absolute"),
    ("unsafe map file", lambda w: w.args(map_file="/etc/haproxy/a;b.map"), "map_file '/etc/haproxy/a;b.map' must not"),
    ("environment not a name", lambda w: w.args(environment="prod/eu"), "environment 'prod/eu' must be a plain name"),
    ("key not a word", lambda w: w.args(key="production green"), "key 'production green' is not a plain word"),
    ("bad token", lambda w: w.args(token="not-a-token"), "token must be the 32 lowercase hex digits"),
    ("zero http_timeout", lambda w: w.args(http_timeout=0), "http_timeout must be more than 0"),
    ("zero lease", lambda w: w.args(lease_seconds=0), "lease_seconds must be between 1 and 86400"),
    ("bad backend_template", lambda w: w.args(backend_template="{env}_{colour}"), "backend_template '{env}_{colour}'"),
    ("token without the lock", lambda w: w.args(token="0" * 32, lock=False), "token only applies with lock=true"),
    ("holder with a list", lambda w: w.args(holder={"user": ["a"]}), "holder values must be plain strings"),
]


@pytest.mark.parametrize("breaks, expected", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_fails_before_anything_changes(world: World, capsys: pytest.CaptureFixture[str],
                                                 breaks: t.Callable[[World], dict[str, t.Any]], expected: str) -> None:
    map_before = world.map_file.read_text()
    result = run(capsys, breaks(world))
    assert result["failed"] is True
    assert expected in result["msg"], result["msg"]
    assert "nothing was changed" in result["msg"]
    assert result["commands"] == [] and result["token"] is None
    assert not list(world.journal_dir.glob("*/deploy.lock*"))  # not even the lock's guard file
    assert world.map_file.read_text() == map_before


def test_every_input_problem_is_reported_at_once(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, world.args(journal_dir="journal", http_timeout=-1, key="a b"))
    assert all(part in result["msg"] for part in ("journal_dir", "http_timeout", "key 'a b'"))


def test_a_token_that_no_longer_holds_the_lock_stops_the_run(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    token = "0123456789abcdef0123456789abcdef"
    result = run(capsys, world.args(token=token))
    assert result["failed"] is True and "this run lost the deploy lock of production" in result["msg"]
    assert token not in json.dumps(result)
    assert result["commands"] == [] and not (world.journal_dir / "production" / "deploy.lock").exists()


def test_plan_goes_back_to_the_colour_the_deploy_left(world: World) -> None:
    plan = load_plan(str(world.journal_dir), "production", ["blue", "green"])
    assert (plan.colour_back, plan.release_back) == ("blue", "1.0.0")
    assert (plan.colour_live, plan.release_live) == ("green", "1.1.0")
    assert plan.record == RECORD and plan.path == str(world.record_file)
    assert plan.unfinished is False
    intent = world.record_file.with_name("switch-intent.json")  # a run killed between its flip and its record
    intent.write_text(json.dumps(dict(RECORD, colour_from="green", release_from="1.1.0", colour_to="blue",
                                      release_to="1.2.0", state="switching")))
    plan = load_plan(str(world.journal_dir), "production", ["blue", "green"])
    assert (plan.colour_back, plan.release_back, plan.unfinished, plan.path) == ("green", "1.1.0", True, str(intent))
    intent.write_text("{")
    with pytest.raises(PlanError, match="switch-intent.json is corrupt"):
        load_plan(str(world.journal_dir), "production", ["blue", "green"])
    intent.unlink()
    write_record(world, json.dumps(dict(RECORD, kind="rollback")))
    with pytest.raises(PlanError, match="is a 'rollback' record"):
        load_plan(str(world.journal_dir), "production", ["blue", "green"])


@pytest.mark.parametrize("addr, expected", [("127.0.0.1:28111", ("127.0.0.1", 28111)), ("[::1]:8080", ("::1", 8080)),
                                            ("10.0.0.5:80", ("10.0.0.5", 80))])
def test_split_addr(addr: str, expected: tuple[str, int]) -> None:
    assert split_addr(addr) == expected


@pytest.mark.parametrize("addr", ["", "unix", "127.0.0.1", "127.0.0.1:0", "host:http"])
def test_split_addr_refuses_what_cannot_be_asked(addr: str) -> None:
    with pytest.raises(ValueError, match="no address:port"):
        split_addr(addr)


def test_judge_names_each_reason_and_ignores_nothing_else() -> None:
    rows = {name: {"status": status, "addr": f"10.0.0.{i}:8081", "check_status": check}
            for i, (name, status, check) in enumerate([("a", "UP", "L7OK"), ("b", "DOWN", "L7STS"), ("c", "UP", "L7OK"),
                                                       ("d", "MAINT", ""), ("e", "UP", "L7OK")], start=1)}
    answers = {"a": {"version": "1.0.0", "colour": "blue"}, "b": {"version": "1.0.0", "colour": "blue"},
               "c": {"version": "1.1.0", "colour": "blue"}, "d": {"error": "GET /version failed within 2s: timed out"},
               "e": {"version": "1.0.0", "colour": "green"}}
    servers, problems = judge(rows, answers, "1.0.0", "blue")
    assert [name for name, report in servers.items() if report["ok"]] == ["a"]
    assert problems == ["b (10.0.0.2:8081) is DOWN in HAProxy, last check L7STS",
                        "c (10.0.0.3:8081) runs release 1.1.0, not 1.0.0",
                        "d (10.0.0.4:8081) is MAINT in HAProxy",
                        "d (10.0.0.4:8081): GET /version failed within 2s: timed out",
                        "e (10.0.0.5:8081) says it is colour green, not blue"]
    assert judge({}, {}, "1.0.0", "blue")[1] == ["the backend has no servers"]
    # an outage both colours share: the status is reported, the release still has to be right
    servers, problems = judge(rows, answers, "1.0.0", "blue", shared_outage=True)
    assert servers["b"]["status"] == "DOWN" and servers["b"]["ok"] is True
    assert problems == ["c (10.0.0.3:8081) runs release 1.1.0, not 1.0.0",
                        "d (10.0.0.4:8081): GET /version failed within 2s: timed out",
                        "e (10.0.0.5:8081) says it is colour green, not blue"]


@pytest.mark.parametrize("option, value", [("socket_timeout", "nan"), ("http_timeout", "nan"), ("http_timeout", "inf")])
def test_nan_and_infinite_timeouts_fail_before_anything(world: World, capsys: pytest.CaptureFixture[str], option: str,
                                                        value: str) -> None:
    result = run(capsys, world.args(**{option: value}))
    assert result["failed"] is True and f"{option} must be more than 0" in result["msg"]
    assert result["commands"] == [] and not list(world.journal_dir.glob("*/deploy.lock*"))


@pytest.mark.parametrize("template", ["{key.real}_{colour}", "{key[0]}_{colour}", "{key:>999999999}_{colour}"])
def test_templates_with_more_than_plain_fields_fail_before_anything(world: World, capsys: pytest.CaptureFixture[str],
                                                                    template: str) -> None:
    result = run(capsys, world.args(backend_template=template))
    assert result["failed"] is True and "backend_template" in result["msg"] and result["commands"] == []

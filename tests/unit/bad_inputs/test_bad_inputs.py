"""The bad-input corpus: every case runs its module in-process and must be refused with a message naming the
option, before anything changes (the case's files stay as they were) and before any connection is made."""

from __future__ import annotations

import shutil
import socket
import tempfile
import typing as t
from pathlib import Path

import pytest

from corpus import SECRET_ENV, Case, Listener, build, load_cases, module_names, run_module, substitute, tree

CASES = load_cases()
MINIMUM_CASES = 200


def params() -> list[t.Any]:
    return [pytest.param(c, id=f"{c.module}:{c.id}",
                         marks=[pytest.mark.xfail(strict=True, reason=c.xfail_reason)] if c.xfail_reason else [])
            for c in CASES]


@pytest.fixture(scope="module")
def tcp() -> t.Iterator[Listener]:
    listener = Listener(socket.AF_INET, ("127.0.0.1", 0))
    yield listener
    listener.close()


@pytest.fixture
def workdir() -> t.Iterator[Path]:
    # short: a unix socket path must stay under 108 bytes
    path = Path(tempfile.mkdtemp(prefix="bad-input-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", params())
def test_case(case: Case, tcp: Listener, workdir: Path, capsys: pytest.CaptureFixture[str],
              monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    unix = Listener(socket.AF_UNIX, str(workdir / "haproxy.sock"))
    where = {"@TMP@": str(workdir), "@PORT@": str(tcp.sock.getsockname()[1]), "@SOCK@": str(workdir / "haproxy.sock")}
    build(workdir, case.setup, where)
    before, connections = tree(workdir), tcp.connections + unix.connections
    try:
        result = run_module(case.module, substitute(case.args, where), capsys)
    finally:
        unix.close()
    msg = str(result.get("msg", ""))
    assert "Traceback" not in msg and "exception" not in result, result
    if case.base:
        expected = case.base_expect
        assert result.get("failed", False) is expected["failed"], result
        if expected.get("connected"):
            assert tcp.connections + unix.connections > connections, f"the base arguments never connected: {msg}"
        assert expected.get("msg_contains", "") in msg, result
        return
    assert result.get("failed") is True, f"accepted: {result}"
    assert case.expect in msg, f"the message does not name {case.expect!r}: {msg[:2000]}"
    assert result.get("changed") is not True, result
    assert tree(workdir) == before, "files changed"
    assert tcp.connections + unix.connections == connections, f"connected before refusing: {msg[:2000]}"


def test_the_corpus_covers_every_module() -> None:
    refused = [c for c in CASES if not c.base]
    assert len(refused) >= MINIMUM_CASES
    per_module = {name: sum(1 for c in refused if c.module == name) for name in module_names()}
    assert all(count >= 5 for count in per_module.values()), per_module
    ids = [(c.module, c.id) for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique per module"

"""Unit tests of frontend_sample_info against a real HTTP server on 127.0.0.1 whose answers each test scripts.

The server stands for a load balancer's frontend: request n (counted from 1) gets what the test's script returns for
it, so a test decides which app host, release and colour answer, and when.
"""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
import time
import typing as t
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.modules import frontend_sample_info
from loopback_ports import free_port

# (status, body): a dict body is sent as JSON, bytes as they are
Reply = tuple[int, t.Any]
Script = t.Callable[[int], Reply]


def version(host: str, release: str = "1.1.0", colour: str = "blue") -> Reply:
    return 200, {"colour": colour, "instance": f"{host}-{colour}", "name": "payment-service", "version": release}


def rotate(*hosts: str) -> Script:
    """Round robin over ``hosts``, all on release 1.1.0, blue."""
    return lambda n: version(hosts[(n - 1) % len(hosts)])


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: t.Any, client_address: t.Any) -> None:
        """A client that gave up (the timeout test) is no error of the server's."""


class Frontend:
    """A threading HTTP server answering every GET with ``script(n)``; it records each request's path and port."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.requests: list[tuple[str, int]] = []
        frontend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                frontend.requests.append((self.path, self.client_address[1]))
                status, body = frontend.script(len(frontend.requests))
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def frontend() -> t.Iterator[t.Callable[..., Frontend]]:
    started: list[Frontend] = []

    def start(script: Script, tls: ssl.SSLContext | None = None) -> Frontend:
        started.append(Frontend(script, tls))
        return started[-1]

    yield start
    for server in started:
        server.close()


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], check: bool = False) -> dict[str, t.Any]:
    args = {"delay": 0, "timeout": 2, **args}
    if check:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        frontend_sample_info.main()
    result: dict[str, t.Any] = json.loads(capsys.readouterr().out)
    return result


def sample(capsys: pytest.CaptureFixture[str], server: Frontend, check: bool = False, **args: t.Any) -> dict[str, t.Any]:
    return run(capsys, {"url": server.url(), "expected_version": "1.1.0", "expected_colour": "blue",
                        "expected_hosts": ["app1", "app2"], **args}, check=check)


def test_every_request_is_answered_on_its_own_connection(capsys: pytest.CaptureFixture[str],
                                                         frontend: t.Callable[..., Frontend]) -> None:
    server = frontend(rotate("app1", "app2"))
    result = sample(capsys, server, requests=6, extra_requests=5, check=True)
    assert result["changed"] is False and "failed" not in result
    assert (result["versions"], result["colours"], result["hosts"]) == (["1.1.0"], ["blue"], ["app1", "app2"])
    assert result["statuses"] == [200] and result["missing_hosts"] == []
    assert (result["requests_sent"], result["extra_requests_sent"], result["extra_requests_by_host"]) == (6, 0, {})
    assert [a["instance"] for a in result["answers"]] == ["app1-blue", "app2-blue"] * 3
    first = result["answers"][0]
    expected = {"host": "app1", "status": 200, "error": None, "extra": False}
    assert {k: first[k] for k in expected} == expected
    assert len({port for _path, port in server.requests}) == 6, "each request must open its own connection"
    assert {path for path, _port in server.requests} == {"/version"}


def test_a_host_that_appears_late_is_asked_for_until_it_answers(capsys: pytest.CaptureFixture[str],
                                                                frontend: t.Callable[..., Frontend]) -> None:
    server = frontend(lambda n: version("app1" if n >= 7 else "app2"))
    result = sample(capsys, server, requests=4, extra_requests=5)
    assert result["missing_hosts"] == [] and result["hosts"] == ["app1", "app2"]
    assert (result["requests_sent"], result["extra_requests_sent"], result["extra_requests_by_host"]) == (7, 3, {"app1": 3})
    assert [a["extra"] for a in result["answers"]] == [False] * 4 + [True] * 3
    assert len(server.requests) == 7


def test_a_host_that_never_answers_gets_the_extra_requests_and_is_missing(
        capsys: pytest.CaptureFixture[str], frontend: t.Callable[..., Frontend]) -> None:
    server = frontend(rotate("app2"))
    result = sample(capsys, server, requests=3, extra_requests=2, expected_hosts=["app1", "app2", "app3"])
    assert result["missing_hosts"] == ["app1", "app3"] and result["hosts"] == ["app2"]
    assert result["extra_requests_by_host"] == {"app1": 2, "app3": 2}
    assert result["requests_sent"] == len(server.requests) == 7
    assert "failed" not in result, "the module reports; the caller judges"


def test_another_release_in_the_extra_requests_stops_the_sampling(capsys: pytest.CaptureFixture[str],
                                                                  frontend: t.Callable[..., Frontend]) -> None:
    server = frontend(lambda n: version("app2", "1.0.9") if n == 5 else version("app2"))
    result = sample(capsys, server, requests=3, extra_requests=10, expected_hosts=["app1", "app2", "app3"])
    assert len(server.requests) == result["requests_sent"] == 5
    assert result["versions"] == ["1.1.0", "1.0.9"], "in the order they first appeared"
    assert result["extra_requests_by_host"] == {"app1": 2}, "no request for app3 once the verdict is known"
    assert result["missing_hosts"] == ["app1", "app3"]


def test_another_colour_in_the_first_requests_asks_no_more(capsys: pytest.CaptureFixture[str],
                                                           frontend: t.Callable[..., Frontend]) -> None:
    server = frontend(lambda n: version("app2", colour="green") if n == 2 else version("app2"))
    result = sample(capsys, server, requests=4, extra_requests=10)
    assert len(server.requests) == 4, "the first requests are all sent, whatever they answer"
    assert result["colours"] == ["blue", "green"] and result["extra_requests_sent"] == 0
    assert result["answers"][1]["instance"] == "app2-green" and result["answers"][1]["host"] == "app2"


def test_a_503_is_an_answer_with_its_status(capsys: pytest.CaptureFixture[str],
                                            frontend: t.Callable[..., Frontend]) -> None:
    server = frontend(lambda n: (503, b"<html>no server available</html>") if n == 2 else version("app2"))
    result = sample(capsys, server, requests=3, extra_requests=10)
    assert "failed" not in result
    assert result["statuses"] == [200, 503]
    assert result["answers"][1] == {"version": None, "colour": None, "instance": None, "host": None, "status": 503,
                                    "error": "HTTP status 503", "elapsed": result["answers"][1]["elapsed"],
                                    "extra": False}
    assert result["extra_requests_sent"] == 0 and len(server.requests) == 3, "a failed request already decides"


def test_a_refused_port_is_recorded_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {"url": f"http://127.0.0.1:{free_port()}", "requests": 2, "extra_requests": 3,
                          "expected_hosts": ["app1"]})
    assert "failed" not in result and result["changed"] is False
    assert result["statuses"] == [None] and result["requests_sent"] == 2
    assert all(a["error"].startswith("no answer: ") and "refused" in a["error"].lower() for a in result["answers"])
    assert (result["versions"], result["hosts"], result["missing_hosts"]) == ([], [], ["app1"])


@pytest.mark.parametrize(("body", "error"), [
    (b"<html>it works</html>", "the body is not JSON"),
    ([1, 2], "the body is not a JSON object with version, colour and instance"),
    ({"version": "1.1.0", "colour": "blue"}, "the body is not a JSON object with version, colour and instance"),
])
def test_a_200_that_is_not_the_version_answer_is_an_error(capsys: pytest.CaptureFixture[str],
                                                          frontend: t.Callable[..., Frontend], body: t.Any,
                                                          error: str) -> None:
    server = frontend(lambda n: (200, body))
    result = sample(capsys, server, requests=2, extra_requests=3)
    assert [a["error"] for a in result["answers"]] == [error, error]
    assert result["statuses"] == [200] and result["versions"] == [] and result["hosts"] == []
    assert len(server.requests) == 2


def test_a_slow_answer_times_out(capsys: pytest.CaptureFixture[str], frontend: t.Callable[..., Frontend]) -> None:
    def slow_first(n: int) -> Reply:
        if n == 1:
            time.sleep(1)
        return version("app1")

    server = frontend(slow_first)
    result = sample(capsys, server, requests=2, timeout=0.2, expected_hosts=["app1"])
    assert result["answers"][0]["error"] == "no answer: timed out" and result["answers"][0]["status"] is None
    assert result["answers"][1]["host"] == "app1"


def test_path_is_appended_to_the_url_and_its_prefix(capsys: pytest.CaptureFixture[str],
                                                    frontend: t.Callable[..., Frontend]) -> None:
    server = frontend(rotate("app1"))
    result = run(capsys, {"url": server.url() + "/lb/", "path": "/about/version", "requests": 1})
    assert server.requests[0][0] == "/lb/about/version" and result["hosts"] == ["app1"]


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(Path(cert), Path(key))
    return context


def test_https_verifies_the_certificate_unless_told_not_to(capsys: pytest.CaptureFixture[str],
                                                           frontend: t.Callable[..., Frontend],
                                                           self_signed: ssl.SSLContext) -> None:
    server = frontend(rotate("app1", "app2"), tls=self_signed)
    refused = run(capsys, {"url": server.url("https"), "requests": 1})
    assert refused["answers"][0]["status"] is None and "certificate" in refused["answers"][0]["error"].lower()
    trusted = run(capsys, {"url": server.url("https"), "requests": 2, "validate_certs": False})
    assert trusted["hosts"] == ["app1", "app2"] and trusted["statuses"] == [200]


BAD_INPUTS = [
    ({"url": "ftp://127.0.0.1/"}, "url must be an http:// or https:// URL"),
    ({"url": "http://"}, "url must be an http:// or https:// URL with a host"),
    ({"url": "http://user:pw@127.0.0.1"}, "url must not carry credentials"),
    ({"url": "http://127.0.0.1/?x=1"}, "url must not carry a query"),
    ({"url": "http://127.0.0.1:99999"}, "url has an invalid port"),
    ({"url": "http://127.0.0.1/\nHost: evil"}, "without spaces or control characters"),
    ({"path": "version"}, "path must start with /"),
    ({"requests": 0}, "requests must be from 1 to 1000 (got 0)"),
    ({"requests": 1001}, "requests must be from 1 to 1000"),
    ({"extra_requests": -1}, "extra_requests must be from 0 to 1000 (got -1)"),
    ({"delay": float("nan")}, "delay must be at least 0 and at most 60 seconds"),
    ({"delay": 61}, "delay must be at least 0 and at most 60 seconds"),
    ({"timeout": 0}, "timeout must be more than 0 and at most 300 seconds"),
    ({"timeout": float("inf")}, "timeout must be more than 0"),
    ({"expected_hosts": ["app1", "app 2"]}, "expected_hosts must hold plain host names"),
    ({"expected_version": "1.1.0\n"}, "expected_version must be a non-empty word"),
    ({"expected_colour": ""}, "expected_colour must be a non-empty word"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[f"{next(iter(case[0]))}-{i}" for i, case in enumerate(BAD_INPUTS)])
def test_bad_input_fails_before_any_request(capsys: pytest.CaptureFixture[str], frontend: t.Callable[..., Frontend],
                                            args: dict[str, t.Any], message: str) -> None:
    server = frontend(rotate("app1"))
    result = run(capsys, {"url": server.url(), "requests": 2, **args})
    assert result["failed"] is True and message in result["msg"], result["msg"]
    assert "answers" not in result and server.requests == []


def test_every_problem_is_named_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {"url": "gopher://x", "requests": 0, "extra_requests": 5000, "timeout": -1})
    assert result["failed"] is True
    assert all(option in result["msg"] for option in ("url", "requests must", "extra_requests", "timeout")), result["msg"]

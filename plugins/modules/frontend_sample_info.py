#!/usr/bin/python
# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: frontend_sample_info
short_description: Ask a load balancer's frontend which release, colour and app host answer, request by request
version_added: 0.1.0
description:
  - Sends O(requests) C(GET) requests to O(url) followed by O(path) in sequence, each on a new connection so that the load
    balancer spreads them over its servers, and records the C(version), C(colour) and C(instance) of each answer (the
    service's C(/version) answer, for example V(1.1.0), V(blue) and V(app1-blue)).
  - Then, for each host of O(expected_hosts) that has not answered yet, sends up to O(extra_requests) more requests,
    O(delay) seconds apart, until that host answers. A host can miss the first requests without being wrong (a
    connection it refused is retried on another server, a health check flap keeps it out for a second or two).
  - An answer that is not of O(expected_version) and O(expected_colour), or a request that failed, ends the sampling
    at once after the first O(requests); the answers so far already decide, and asking further only delays the verdict.
  - A failed request (refused, timed out, a status other than C(200), a body that is not the JSON object above) is
    recorded as an answer with its RV(answers[].error), not a failure of the module. The module judges nothing; the
    caller asserts on what it returns. It fails only for bad input, before sending any request.
  - Everything runs in one module run, with the Python standard library only.
author: "Payments Platform Team (@payments-platform)"
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - payments.deploy.info_module
options:
  url:
    description:
      - The frontend's base URL, C(http) or C(https), for example C(https://pay.example.com); it may carry a path prefix.
      - Credentials, a query or a fragment are refused.
    type: str
    required: true
  path:
    description:
      - The path appended to O(url) that answers C({"version", "colour", "instance"}).
    type: str
    default: /version
  requests:
    description:
      - How many requests to send first, whatever they answer. From 1 to 1000.
    type: int
    required: true
  extra_requests:
    description:
      - How many more requests to send, at most, for each host of O(expected_hosts) the requests so far did not reach.
        From 0 (none) to 1000.
    type: int
    default: 0
  delay:
    description:
      - Seconds between two extra requests (a finite number from 0 to 60).
    type: float
    default: 1
  expected_hosts:
    description:
      - The app hosts that should answer, as named by the C(instance) of their answers without its colour suffix
        (C(app1) for C(app1-blue)). Only used to decide which hosts to ask for again.
    type: list
    elements: str
    default: []
  expected_version:
    description:
      - The release the answers should report. Another one ends the sampling. Not checked when omitted.
    type: str
  expected_colour:
    description:
      - The colour the answers should report. Another one ends the sampling. Not checked when omitted.
    type: str
  timeout:
    description:
      - Seconds each request may take, connection included (a finite number above 0, at most 300).
    type: float
    default: 5
  validate_certs:
    description:
      - Whether to verify the TLS certificate of an C(https) frontend. Only turn it off for a lab.
    type: bool
    default: true
notes:
  - Proxies from the environment apply as for M(ansible.builtin.uri); safe redirects are followed.
  - The C(host) of an answer is its C(instance) without a trailing C(-blue), C(-green) or C(-<colour of the answer>).
seealso:
  - module: ansible.builtin.uri
  - module: payments.deploy.haproxy_switch_info
"""

EXAMPLES = r"""
- name: Ask the production frontend which release answers after the switch
  payments.deploy.frontend_sample_info:
    url: https://pay.example.com
    requests: 20
    extra_requests: 12
    expected_hosts: [app1, app2]
    expected_version: 1.1.0
    expected_colour: blue
  register: sample

- name: Every answer is 1.1.0 from blue, and every app host answered
  ansible.builtin.assert:
    that:
      - sample.versions == ['1.1.0']
      - sample.colours == ['blue']
      - sample.missing_hosts == []
      - sample.statuses == [200]
      - sample.answers | selectattr('error') | list == []
"""

RETURN = r"""
answers:
  description: Every request sent, in order, with what its answer said.
  returned: success
  type: list
  elements: dict
  contains:
    version:
      description: The C(version) of the answer; V(null) when the request failed.
      type: str
      sample: 1.1.0
    colour:
      description: The C(colour) of the answer; V(null) when the request failed.
      type: str
      sample: blue
    instance:
      description: The C(instance) of the answer; V(null) when the request failed.
      type: str
      sample: app1-blue
    host:
      description: The instance without its colour suffix; V(null) when the request failed.
      type: str
      sample: app1
    status:
      description: The HTTP status; V(null) when there was no HTTP answer (refused, timed out, TLS error).
      type: int
      sample: 200
    error:
      description: Why the request failed (no answer, a status other than C(200), a body that is not the expected JSON object);
        V(null) when it did not.
      type: str
      sample: "HTTP status 503"
    elapsed:
      description: Seconds the request took.
      type: float
      sample: 0.004
    extra:
      description: Whether the request was one of the extra requests for a host not seen yet.
      type: bool
      sample: false
  sample:
    - {"version": "1.1.0", "colour": "blue", "instance": "app1-blue", "host": "app1", "status": 200, "error": null,
       "elapsed": 0.004, "extra": false}
versions:
  description: The versions the successful answers reported, each once, in the order they first appeared.
  returned: success
  type: list
  elements: str
  sample: ["1.1.0"]
colours:
  description: The colours the successful answers reported, each once, in the order they first appeared.
  returned: success
  type: list
  elements: str
  sample: ["blue"]
hosts:
  description: The hosts that answered successfully, sorted, each once.
  returned: success
  type: list
  elements: str
  sample: ["app1", "app2"]
statuses:
  description: The HTTP status of every answer, each once, in the order they first appeared; V(null) stands for
    requests that got no HTTP answer.
  returned: success
  type: list
  elements: int
  sample: [200]
missing_hosts:
  description: The hosts of O(expected_hosts) that never answered successfully, in the order given.
  returned: success
  type: list
  elements: str
  sample: []
extra_requests_sent:
  description: How many extra requests were sent, for all hosts together.
  returned: success
  type: int
  sample: 3
extra_requests_by_host:
  description: For each host asked for again, how many extra requests were sent for it.
  returned: success
  type: dict
  sample: {"app1": 3}
requests_sent:
  description: How many requests were sent in all, the extra requests included.
  returned: success
  type: int
  sample: 23
duration:
  description: Seconds the whole sampling took, the delays included.
  returned: success
  type: float
  sample: 3.05
"""

import json
import re
import time
import typing as t
from urllib.error import HTTPError
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import Request, make_context

from ansible_collections.payments.deploy.plugins.module_utils._numbers import number_problems

MAX_REQUESTS = 1000
MAX_BODY_BYTES = 64 * 1024
USER_AGENT = "payments.deploy-frontend-sample"
UNSAFE_TEXT = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]")
PLAIN_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}")
COLOUR_SUFFIXES = ("blue", "green")


def input_problems(params: dict[str, t.Any]) -> list[str]:
    """Every problem with the options, so that one run names them all."""
    problems = []
    url, path = params["url"], params["path"]
    if not isinstance(url, str) or not url or UNSAFE_TEXT.search(url):
        problems.append(f"url must be an http or https URL without spaces or control characters (got {url!r:.200})")
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"url must be an http:// or https:// URL with a host (got {url!r:.200})")
        elif parts.username is not None or parts.password is not None:
            problems.append("url must not carry credentials")
        elif parts.query or parts.fragment or url.endswith(("?", "#")):
            problems.append(f"url must not carry a query or a fragment (got {url!r:.200})")
        else:
            try:
                dummy = parts.port
            except ValueError:
                problems.append(f"url has an invalid port (got {url!r:.200})")
    if not path.startswith("/") or UNSAFE_TEXT.search(path) or "#" in path:
        problems.append(f"path must start with / and hold no spaces, control characters or # (got {path!r:.200})")
    for option, low in (("requests", 1), ("extra_requests", 0)):
        if not low <= params[option] <= MAX_REQUESTS:
            problems.append(f"{option} must be from {low} to {MAX_REQUESTS} (got {params[option]})")
    problems += number_problems(params, {"delay": {"minimum": 0.0, "allow_minimum": True, "maximum": 60.0},
                                         "timeout": {"minimum": 0.0, "maximum": 300.0}})
    for name in params["expected_hosts"]:
        if not PLAIN_HOST.fullmatch(name):
            problems.append(f"expected_hosts must hold plain host names (letters, digits, _ . : -; got {name!r:.200})")
    for option in ("expected_version", "expected_colour"):
        value = params[option]
        if value is not None and (not value or len(value) > 200 or UNSAFE_TEXT.search(value)):
            problems.append(f"{option} must be a non-empty word without spaces or control characters (got {value!r:.200})")
    return problems


def host_of(instance: str, colour: str) -> str:
    """``app1`` for ``app1-blue``: the instance without its colour suffix."""
    for suffix in (colour, *COLOUR_SUFFIXES):  # the answer's own colour first
        if suffix and instance.endswith(f"-{suffix}"):
            return instance[: -len(suffix) - 1]
    return instance


class Sampler:
    """Sends the requests and keeps every answer."""

    def __init__(self, params: dict[str, t.Any]) -> None:
        self.target = params["url"].rstrip("/") + params["path"]
        # one TLS context for every request: building one loads the CA store, which takes longer than a request
        context = make_context(validate_certs=params["validate_certs"])
        self.request = Request(timeout=params["timeout"], validate_certs=params["validate_certs"], http_agent=USER_AGENT,
                               follow_redirects="safe", headers={"Accept": "application/json"}, context=context)
        self.expected_version = params["expected_version"]
        self.expected_colour = params["expected_colour"]
        self.answers: list[dict[str, t.Any]] = []

    def ask(self, extra: bool) -> dict[str, t.Any]:
        answer: dict[str, t.Any] = {"version": None, "colour": None, "instance": None, "host": None, "status": None,
                                    "error": None, "elapsed": 0.0, "extra": extra}
        started = time.monotonic()
        try:
            # a new connection for each request (urllib closes it), as the uri module does: the balancer spreads them
            response = self.request.open("GET", self.target)
            with response:
                answer["status"] = response.status
                body = response.read(MAX_BODY_BYTES)
        except HTTPError as exc:
            answer["status"], answer["error"] = exc.code, f"HTTP status {exc.code}"
            exc.close()
        except Exception as exc:  # pylint: disable=broad-exception-caught  # any failure is an answer, not a crash
            answer["error"] = f"no answer: {describe(exc)}"
        else:
            self.read_body(answer, body)
        answer["elapsed"] = round(time.monotonic() - started, 4)
        self.answers.append(answer)
        return answer

    @staticmethod
    def read_body(answer: dict[str, t.Any], body: bytes) -> None:
        if answer["status"] != 200:
            answer["error"] = f"HTTP status {answer['status']}"
            return
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            answer["error"] = "the body is not JSON"
            return
        fields = {key: data.get(key) for key in ("version", "colour", "instance")} if isinstance(data, dict) else {}
        if not fields or not all(isinstance(value, str) and value for value in fields.values()):
            answer["error"] = "the body is not a JSON object with version, colour and instance"
            return
        answer.update(fields, host=host_of(fields["instance"], fields["colour"]))

    def as_expected(self, answer: dict[str, t.Any]) -> bool:
        """Whether an answer leaves the verdict open: successful, of the expected version and colour."""
        return (answer["error"] is None
                and self.expected_version in (None, answer["version"])
                and self.expected_colour in (None, answer["colour"]))


def unique(values: t.Iterable[t.Any]) -> list[t.Any]:
    return list(dict.fromkeys(values))


def describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {reason or exc}"


def sample(params: dict[str, t.Any], sleep: t.Callable[[float], None] = time.sleep) -> dict[str, t.Any]:
    sampler = Sampler(params)
    started = time.monotonic()
    for dummy in range(params["requests"]):
        sampler.ask(extra=False)
    by_host: dict[str, int] = {}
    going_on = all(sampler.as_expected(answer) for answer in sampler.answers)
    seen = {answer["host"] for answer in sampler.answers if answer["error"] is None}
    for host in params["expected_hosts"]:
        if not going_on or host in seen:
            continue
        while going_on and host not in seen and by_host.get(host, 0) < params["extra_requests"]:
            if sum(by_host.values()):
                sleep(params["delay"])
            by_host[host] = by_host.get(host, 0) + 1
            answer = sampler.ask(extra=True)
            going_on = sampler.as_expected(answer)
            if answer["error"] is None:
                seen.add(answer["host"])
    good = [answer for answer in sampler.answers if answer["error"] is None]
    hosts = sorted({answer["host"] for answer in good})
    return {
        "answers": sampler.answers,
        "versions": unique(answer["version"] for answer in good),
        "colours": unique(answer["colour"] for answer in good),
        "hosts": hosts,
        "statuses": unique(answer["status"] for answer in sampler.answers),
        "missing_hosts": [host for host in unique(params["expected_hosts"]) if host not in hosts],
        "extra_requests_sent": sum(by_host.values()),
        "extra_requests_by_host": by_host,
        "requests_sent": len(sampler.answers),
        "duration": round(time.monotonic() - started, 4),
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "path": {"type": "str", "default": "/version"},
            "requests": {"type": "int", "required": True},
            "extra_requests": {"type": "int", "default": 0},
            "delay": {"type": "float", "default": 1.0},
            "expected_hosts": {"type": "list", "elements": "str", "default": []},
            "expected_version": {"type": "str"},
            "expected_colour": {"type": "str"},
            "timeout": {"type": "float", "default": 5.0},
            "validate_certs": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    problems = input_problems(module.params)
    if problems:
        module.fail_json(msg="; ".join(problems))
    module.exit_json(changed=False, **sample(module.params))


if __name__ == "__main__":
    main()

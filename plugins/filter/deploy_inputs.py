# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: deploy_input_problems
short_description: Every problem with a deploy's inputs, in texts that hold no secret
version_added: 0.4.0
description:
  - Checks the inputs of a deploy together and returns one text per problem, so that a preflight can report them all
    in one failure before anything changes. An empty list means the inputs are fine.
  - The release version (X.Y.Z); the environment's frontend in O(frontend_urls); the app hosts of the environment's
    inventory group, each with two different colour ports, a known service manager (and its supervisor configuration),
    and a C(payments_env) that defines every O(required_env) variable, an C(ENCRYPTION_KEY) of 64 hex characters,
    no value with a line break or another line separator, a C(DATABASE_URL) libpq can use (with TLS in
    O(tls_environments)) and a C(REDIS_URL) that uses TLS to reach another host (in O(tls_environments)).
  - The staging gate's, the deploy lock's and the endpoints' settings. O(staging_gate_override) needs a reason,
    O(staging_gate_max_age_days) is above 0 and at most 365, O(staging_gate_source) is not the environment deployed,
    O(lock_lease_seconds) is a whole number from 10 to 86400, and O(stripe_api_base) and every O(frontend_urls) URL is an
    http(s) URL without credentials or path.
  - Texts name the deploy's variables (C(release_version), C(traffic_frontend_urls), C(payments_env), ...), each app
    host's problems start with the host's name, and no text holds a value of C(payments_env) (they are secrets) or the
    credentials of a refused URL. A value of the wrong type is a problem, never an error.
  - Needs psycopg 3.1 or newer on the controller to read C(DATABASE_URL) (without it, each one is reported).
author: "Payments Platform Team (@payments-platform)"
positional: _input
options:
  _input:
    description: The app hosts of the environment deployed (its inventory group C(ENVIRONMENT_app)).
    type: list
    elements: str
    required: true
  hostvars:
    description:
      - Every host's variables (C(hostvars)). Only the app hosts' C(payments_colour_ports), C(release_service_manager),
        C(release_supervisor_config) and C(payments_env) are read.
    type: dict
    required: true
  environment:
    description: The environment deployed (C(deploy_environment)).
    type: str
    required: true
  app_group:
    description: The inventory group of the app hosts, for the messages; default C(ENVIRONMENT_app).
    type: str
  release_version:
    description: The version to deploy. Leave it out when it is not set (the problem says so).
    type: str
  frontend_urls:
    description: The frontend URL of each environment (C(traffic_frontend_urls)).
    type: dict
    default: {}
  required_env:
    description: The variables every app host's C(payments_env) must define.
    type: list
    elements: str
    default: []
  tls_environments:
    description: The environments whose C(DATABASE_URL) and remote C(REDIS_URL) must use TLS.
    type: list
    elements: str
    default: []
  db_plaintext_opt_out:
    description:
      - A reason to let a C(DATABASE_URL) without TLS through in O(tls_environments), honoured only when every host of
        the URL is a loopback address or a Unix socket directory (C(payments_db_plaintext_opt_out)).
    type: str
    default: ""
  staging_gate_override:
    description: The reason to deploy without staging evidence; leave it out when it is not set. A blank one is refused.
    type: str
  staging_gate_max_age_days:
    description: How old the staging evidence may be, in days.
    type: float
    default: 7
  staging_gate_environments:
    description: The environments that refuse an artifact without staging evidence.
    type: list
    elements: str
    default: []
  staging_gate_source:
    description: The environment whose journal holds the staging evidence.
    type: str
    default: staging
  lock_lease_seconds:
    description: The deploy lock's lease (C(deploy_lock_lease_seconds)).
    type: int
    default: 900
  stripe_api_base:
    description: Stripe's API base URL (C(payments_stripe_api_base)).
    type: str
    default: https://api.stripe.com
"""

EXAMPLES = r"""
- name: Stop before anything changes when an input is wrong
  ansible.builtin.fail:
    msg: "{{ problems | length }} problem(s); nothing was changed: {{ problems | join('; ') }}"
  when: problems | length > 0
  no_log: true  # the check reads payments_env: the texts hold no value of it, but a failure's context would
  vars:
    problems: >-
      {{ groups['production_app'] | payments.deploy.deploy_input_problems(
           hostvars=hostvars, environment='production', release_version=release_version,
           frontend_urls=traffic_frontend_urls, required_env=['DATABASE_URL', 'ENCRYPTION_KEY'],
           tls_environments=['production'], staging_gate_environments=['production']) }}
"""

RETURN = r"""
_value:
  description:
    - One text per problem, in the order of the checks (the release, the environment, each app host, the settings);
      empty when every input is fine.
  type: list
  elements: str
"""

import re
import typing as t
from collections.abc import Hashable, Mapping

from ansible_collections.payments.deploy.plugins.module_utils._conninfo import (
    TLS_MODES,
    ConninfoError,
    is_loopback,
    parse_database_url,
)

# A keyword not given: the variable is not set (a null value is set, and reported as it is).
UNSET: t.Any = object()
SERVICE_MANAGERS = ("systemd", "supervisor")
HTTP_URL = re.compile(r"https?://[A-Za-z0-9.\[\]:-]+(:[0-9]{1,5})?/?")
REDIS_HOST = re.compile(r"redis://(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)")
REDIS_LOOPBACK = re.compile(r"localhost|127\.[0-9.]+|\[::1\]")
PORT_QUOTED = re.compile(r"has a port that is not a number: .*", re.DOTALL)
PORT_NOT_SHOWN = "has a port that is not a number (not shown: it may hold a part of the password)"
# Redis on another host: its password and the cached customers cross the network; loopback stays on the host.
REDIS_TLS_ADVICE = ("use rediss:// (with ssl_ca_certs=<CA file> when a private CA signed its certificate); redis:// "
                    "sends the password and every cached value in clear text")
DATABASE_TLS_ADVICE = ("add ?sslmode=verify-full (or verify-ca, require) with sslrootcert=<CA file>; without it libpq "
                       "falls back to a connection an attacker on the path can read or downgrade")


def kind(value: t.Any) -> str:
    """The type of a value, in words, for a problem that must not show the value itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a dict"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def is_list(value: t.Any) -> bool:
    return isinstance(value, (list, tuple))


def as_int(value: t.Any) -> int:
    """Jinja's int filter: 0 for what is not a number ("42.7" is 42)."""
    try:
        return int(value, 10) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return 0


def shown_url(value: t.Any) -> str:
    """A URL for a message, its credentials (everything up to the last @) replaced."""
    text = str(value)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest


def has_line_separator(value: t.Any) -> bool:
    """Every separator str.splitlines knows (\\v, \\f, \\x1c-\\x1e, \\x85, U+2028, U+2029 too): the env file is read
    that way."""
    return len((str(value) + ".").splitlines()) > 1


def release_problems(release_version: t.Any) -> list[str]:
    if isinstance(release_version, str) and re.fullmatch(r"\d+\.\d+\.\d+", release_version):
        return []
    shown = "nothing" if release_version is UNSET else release_version
    return [f"release_version must be set to X.Y.Z (got {shown})"]


def ports_problems(host: str, host_vars: Mapping[str, t.Any]) -> list[str]:
    ports = host_vars.get("payments_colour_ports", {})
    if not isinstance(ports, Mapping) or "blue" not in ports or "green" not in ports:
        return [f"{host}: payments_colour_ports must define blue and green ports"]
    if as_int(ports["blue"]) < 1 or as_int(ports["green"]) < 1 or ports["blue"] == ports["green"]:
        return [f"{host}: payments_colour_ports needs two different ports"]
    return []


def service_manager_problems(host: str, host_vars: Mapping[str, t.Any]) -> list[str]:
    manager = host_vars.get("release_service_manager", "systemd")
    if manager == "supervisor" and not host_vars.get("release_supervisor_config", ""):
        return [f"{host}: release_supervisor_config is not set (release_service_manager is supervisor)"]
    if manager not in SERVICE_MANAGERS:
        return [f"{host}: release_service_manager must be systemd or supervisor"]
    return []


def database_problems(host: str, url: t.Any, environment: str, tls_environments: list[t.Any],
                      db_plaintext_opt_out: str) -> list[str]:
    try:
        parsed = parse_database_url(str(url), "the PostgreSQL URL")
    except ConninfoError as exc:
        # Its text never quotes the URL, but it quotes the port, where libpq puts what follows the first ':' of a
        # password holding an unencoded '/' (postgresql://user:pass/word@host/db). That part is not shown.
        return [f"{host}: DATABASE_URL: {PORT_QUOTED.sub(PORT_NOT_SHOWN, str(exc))}"]
    if environment in tls_environments and parsed.get("sslmode") not in TLS_MODES \
            and not (is_loopback(parsed) and db_plaintext_opt_out):
        return [f"{host}: DATABASE_URL of {environment} must use TLS: {DATABASE_TLS_ADVICE}"]
    return []


def redis_problems(host: str, url: t.Any, environment: str) -> list[str]:
    text = str(url)
    found = REDIS_HOST.match(text)
    if not found or REDIS_LOOPBACK.fullmatch(found.group(1)):
        return []
    server = found.group(1)
    # An @ in the host or after it: a password with an unencoded @, / or # confuses the split, and any part of it
    # could be taken for the host. Name no host then.
    if "@" in server or "@" in text[found.end():]:
        return [f"{host}: REDIS_URL of {environment} must use TLS to reach its server: {REDIS_TLS_ADVICE}"]
    return [f"{host}: REDIS_URL of {environment} must use TLS to reach {server}: {REDIS_TLS_ADVICE}"]


def env_problems(host: str, env: t.Any, environment: str, required_env: list[t.Any], tls_environments: list[t.Any],
                 db_plaintext_opt_out: str) -> list[str]:
    """The problems of one app host's payments_env: never a value, only the names of the variables."""
    if not isinstance(env, Mapping):
        return [f"{host}: payments_env must be a dict of environment variables (got {kind(env)})"]
    problems = []
    missing = [str(name) for name in required_env if not isinstance(name, Hashable) or name not in env]
    if missing:
        problems.append(f"{host}: payments_env lacks {', '.join(missing)}")
    if "ENCRYPTION_KEY" in env and not re.fullmatch(r"[0-9a-fA-F]{64}", str(env["ENCRYPTION_KEY"])):
        problems.append(f"{host}: ENCRYPTION_KEY must be 32 bytes as 64 hex characters")
    for name, value in env.items():
        if has_line_separator(value):
            problems.append(f"{host}: {name} holds a line break or another line separator")
    if "DATABASE_URL" in env:
        problems += database_problems(host, env["DATABASE_URL"], environment, tls_environments, db_plaintext_opt_out)
    if environment in tls_environments:
        problems += redis_problems(host, env.get("REDIS_URL", ""), environment)
    return problems


def app_host_problems(host: str, hostvars: Mapping[str, t.Any], environment: str, required_env: list[t.Any],
                      tls_environments: list[t.Any], db_plaintext_opt_out: str) -> list[str]:
    if host not in hostvars:
        return [f"{host}: the host is not in the inventory"]
    host_vars = hostvars[host]  # hostvars reads (and templates) a variable only when asked for it
    if not isinstance(host_vars, Mapping):
        return [f"{host}: its variables are not a dict (got {kind(host_vars)})"]
    problems = ports_problems(host, host_vars) + service_manager_problems(host, host_vars)
    if "payments_env" not in host_vars:
        return problems + [f"{host}: payments_env is not set"]
    return problems + env_problems(host, host_vars["payments_env"], environment, required_env, tls_environments,
                                   db_plaintext_opt_out)


def list_problems(**lists: t.Any) -> list[str]:
    """Lists that are not lists, by the role variable they come from."""
    return [f"{name} must be a list (got {kind(value)})" for name, value in lists.items() if not is_list(value)]


def settings_problems(environment: str, frontend_urls: t.Any, staging_gate_override: t.Any,
                      staging_gate_max_age_days: t.Any, staging_gate_environments: list[t.Any],
                      staging_gate_source: t.Any, lock_lease_seconds: t.Any, stripe_api_base: t.Any) -> list[str]:
    """The staging gate's, the lock's and the endpoints' own settings."""
    problems = []
    if staging_gate_override is not UNSET and (not isinstance(staging_gate_override, str) or not staging_gate_override.strip()):
        problems.append("staging_gate_override needs a reason: -e 'staging_gate_override=\"why this release skips staging\"'")
    max_age = str(staging_gate_max_age_days)
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", max_age) or not 0 < float(max_age) <= 365:
        problems.append(f"preflight_staging_gate_max_age_days must be a number of days above 0 and at most 365 (got {max_age})")
    if environment in staging_gate_environments and staging_gate_source == environment:
        problems.append(f"preflight_staging_gate_source cannot be the environment being deployed ({environment})")
    lease = str(lock_lease_seconds)
    if not re.fullmatch(r"[0-9]+", lease) or not 10 <= int(lease) <= 86400:
        problems.append(f"deploy_lock_lease_seconds must be a whole number of seconds from 10 to 86400 (got {lease})")
    if not HTTP_URL.fullmatch(str(stripe_api_base)):
        problems.append("payments_stripe_api_base must be an http(s) URL without credentials or path "
                        f"(got {shown_url(stripe_api_base)})")
    for name, url in (frontend_urls.items() if isinstance(frontend_urls, Mapping) else []):
        if not HTTP_URL.fullmatch(str(url)):
            problems.append(f"traffic_frontend_urls.{name} must be an http(s) URL without credentials or path "
                            f"(got {shown_url(url)})")
    return problems


def deploy_input_problems(app_hosts: t.Any, hostvars: t.Any = None, *, environment: t.Any = UNSET, app_group: t.Any = None,
                          release_version: t.Any = UNSET, frontend_urls: t.Any = None, required_env: t.Any = (),
                          tls_environments: t.Any = (), db_plaintext_opt_out: t.Any = "", staging_gate_override: t.Any = UNSET,
                          staging_gate_max_age_days: t.Any = 7, staging_gate_environments: t.Any = (),
                          staging_gate_source: t.Any = "staging", lock_lease_seconds: t.Any = 900,
                          stripe_api_base: t.Any = "https://api.stripe.com") -> list[str]:
    """Every problem with the deploy's inputs, in the order of the checks."""
    if not isinstance(environment, str):  # every other check names it
        shown = "nothing" if environment is UNSET else kind(environment)
        return [f"deploy_environment must be the name of an environment (got {shown})"]
    frontend_urls = {} if frontend_urls is None else frontend_urls
    app_group = f"{environment}_app" if app_group is None else app_group
    problems = release_problems(release_version)
    problems += list_problems(preflight_required_env=required_env, preflight_tls_environments=tls_environments,
                              preflight_staging_gate_environments=staging_gate_environments)
    required_env, tls_environments, staging_gate_environments = (
        list(value) if is_list(value) else [] for value in (required_env, tls_environments, staging_gate_environments))
    if not isinstance(frontend_urls, Mapping):
        problems.append(f"traffic_frontend_urls must be a dict of environment: URL (got {kind(frontend_urls)})")
    elif environment not in frontend_urls:
        problems.append(f"deploy_environment {environment} has no frontend in traffic_frontend_urls")
    if not is_list(app_hosts):
        problems.append(f"inventory group {app_group} must be a list of hosts (got {kind(app_hosts)})")
        app_hosts = []
    elif not app_hosts:
        problems.append(f"inventory group {app_group} has no hosts")
    if app_hosts and not isinstance(hostvars, Mapping):
        problems.append(f"hostvars must be a dict of every host's variables (got {kind(hostvars)})")
        app_hosts = []
    opt_out = "" if db_plaintext_opt_out is None else str(db_plaintext_opt_out).strip()
    for host in app_hosts:
        problems += app_host_problems(str(host), hostvars, environment, required_env, tls_environments, opt_out)
    return problems + settings_problems(environment, frontend_urls, staging_gate_override, staging_gate_max_age_days,
                                        staging_gate_environments, staging_gate_source, lock_lease_seconds,
                                        stripe_api_base)


class FilterModule:
    """payments.deploy.deploy_input_problems."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"deploy_input_problems": deploy_input_problems}

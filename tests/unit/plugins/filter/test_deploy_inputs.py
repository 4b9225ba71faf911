"""payments.deploy.deploy_input_problems: every check of a deploy's inputs with an input that fails it and one that
passes, problems reported together, no secret in any text, and wrong types reported as problems, never raised."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import typing as t
from collections.abc import Mapping
from pathlib import Path

import pytest

from ansible_collections.payments.deploy.plugins.filter.deploy_inputs import FilterModule, deploy_input_problems
from conftest import COLLECTION_ROOT, COLLECTIONS_DIR

KEY = "ab" * 32
REQUIRED_ENV = ["DATABASE_URL", "REDIS_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "ENCRYPTION_KEY", "HASH_SALT",
                "PAYMENTS_API_KEY", "PAYMENTS_ADMIN_KEY"]
GOOD_ENV = {"DATABASE_URL": "postgresql://payments:x@db.example.com:5432/payments?sslmode=verify-full&sslrootcert=/ca.pem",
            "REDIS_URL": "redis://:x@127.0.0.1:6379/0", "STRIPE_SECRET_KEY": "sk_live_x", "STRIPE_WEBHOOK_SECRET": "whsec_x",
            "ENCRYPTION_KEY": KEY, "HASH_SALT": "salt", "PAYMENTS_API_KEY": "k", "PAYMENTS_ADMIN_KEY": "a"}
GOOD_HOST = {"payments_colour_ports": {"blue": 8001, "green": 8002}, "release_service_manager": "supervisor",
             "release_supervisor_config": "/etc/supervisor/conf.d/payments.conf", "payments_env": GOOD_ENV}
DB_TLS = ("app1: DATABASE_URL of production must use TLS: add ?sslmode=verify-full (or verify-ca, require) with "
          "sslrootcert=<CA file>; without it libpq falls back to a connection an attacker on the path can read or downgrade")
REDIS_ADVICE = ("use rediss:// (with ssl_ca_certs=<CA file> when a private CA signed its certificate); redis:// sends the "
                "password and every cached value in clear text")
REMOVE = object()  # a change that removes the variable
SEPARATORS = ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def arguments() -> dict[str, t.Any]:
    """Valid inputs of a production deploy with two app hosts, as the preflight role passes them."""
    return {"app_hosts": ["app1", "app2"],
            "hostvars": {"app1": copy.deepcopy(GOOD_HOST), "app2": copy.deepcopy(GOOD_HOST), "lb1": {"x": 1}},
            "environment": "production", "app_group": "production_app", "release_version": "1.2.3",
            "frontend_urls": {"production": "https://127.0.0.1:8443", "staging": "http://127.0.0.1:8080/"},
            "required_env": list(REQUIRED_ENV), "tls_environments": ["production"], "db_plaintext_opt_out": "",
            "staging_gate_max_age_days": 7, "staging_gate_environments": ["production"], "staging_gate_source": "staging",
            "lock_lease_seconds": 900, "stripe_api_base": "https://api.stripe.com"}


def changed(spec: Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The valid arguments with a case's changes: ``args`` (the arguments), ``host`` (app1's variables) and ``env``
    (app1's payments_env); REMOVE removes one."""
    args = arguments()
    app1 = args["hostvars"]["app1"]
    for target, changes in ((args, spec.get("args", {})), (app1, spec.get("host", {})), (app1["payments_env"], spec.get("env", {}))):
        for name, value in changes.items():
            if value is REMOVE:
                target.pop(name, None)
            else:
                target[name] = value
    return args


def problems_of(spec: Mapping[str, t.Any]) -> list[str]:
    args = changed(spec)
    return deploy_input_problems(**args)


def test_valid_inputs_have_no_problem() -> None:
    assert problems_of({}) == []


def test_the_filter_is_published_under_its_name() -> None:
    assert FilterModule().filters() == {"deploy_input_problems": deploy_input_problems}


# id, the change, a text the one problem it causes must hold
FAILING = [
    ("release_version_unset", {"args": {"release_version": REMOVE}}, "release_version must be set to X.Y.Z (got nothing)"),
    ("release_version_word", {"args": {"release_version": "latest"}}, "release_version must be set to X.Y.Z (got latest)"),
    ("release_version_two_parts", {"args": {"release_version": "1.2"}}, "release_version must be set to X.Y.Z (got 1.2)"),
    ("release_version_newline", {"args": {"release_version": "1.2.3\n"}}, "release_version must be set to X.Y.Z"),
    ("release_version_traversal", {"args": {"release_version": "../../etc"}}, "(got ../../etc)"),
    ("release_version_number", {"args": {"release_version": 1.0}}, "release_version must be set to X.Y.Z (got 1.0)"),
    ("environment_without_frontend", {"args": {"frontend_urls": {"staging": "http://127.0.0.1:8080"}}},
     "deploy_environment production has no frontend in traffic_frontend_urls"),
    ("group_empty", {"args": {"app_hosts": []}}, "inventory group production_app has no hosts"),
    ("ports_unset", {"host": {"payments_colour_ports": REMOVE}}, "app1: payments_colour_ports must define blue and green ports"),
    ("ports_without_green", {"host": {"payments_colour_ports": {"blue": 8001}}},
     "app1: payments_colour_ports must define blue and green ports"),
    ("ports_equal", {"host": {"payments_colour_ports": {"blue": 8001, "green": 8001}}},
     "app1: payments_colour_ports needs two different ports"),
    ("ports_text", {"host": {"payments_colour_ports": {"blue": "x", "green": "y"}}},
     "app1: payments_colour_ports needs two different ports"),
    ("ports_zero", {"host": {"payments_colour_ports": {"blue": 0, "green": 8002}}},
     "app1: payments_colour_ports needs two different ports"),
    ("supervisor_without_config", {"host": {"release_supervisor_config": ""}},
     "app1: release_supervisor_config is not set (release_service_manager is supervisor)"),
    ("supervisor_config_unset", {"host": {"release_supervisor_config": REMOVE}},
     "app1: release_supervisor_config is not set (release_service_manager is supervisor)"),
    ("unknown_service_manager", {"host": {"release_service_manager": "upstart"}},
     "app1: release_service_manager must be systemd or supervisor"),
    ("payments_env_unset", {"host": {"payments_env": REMOVE}}, "app1: payments_env is not set"),
    ("env_lacks_two", {"env": {"HASH_SALT": REMOVE, "PAYMENTS_ADMIN_KEY": REMOVE}}, "app1: payments_env lacks HASH_SALT, PAYMENTS_ADMIN_KEY"),
    ("encryption_key_short", {"env": {"ENCRYPTION_KEY": "abab"}}, "app1: ENCRYPTION_KEY must be 32 bytes as 64 hex characters"),
    ("encryption_key_not_hex", {"env": {"ENCRYPTION_KEY": "zz" * 32}}, "app1: ENCRYPTION_KEY must be 32 bytes as 64 hex characters"),
    ("encryption_key_empty", {"env": {"ENCRYPTION_KEY": ""}}, "app1: ENCRYPTION_KEY must be 32 bytes as 64 hex characters"),
    ("encryption_key_number", {"env": {"ENCRYPTION_KEY": 12345}}, "app1: ENCRYPTION_KEY must be 32 bytes as 64 hex characters"),
    ("database_url_plaintext", {"env": {"DATABASE_URL": "postgresql://payments:x@db.example.com/payments"}}, DB_TLS),
    ("database_url_prefer", {"env": {"DATABASE_URL": "postgresql://payments:x@db.example.com/payments?sslmode=prefer"}}, DB_TLS),
    ("database_url_loopback_without_opt_out", {"env": {"DATABASE_URL": "postgresql://payments:x@127.0.0.1/payments"}}, DB_TLS),
    ("database_url_remote_with_opt_out", {"env": {"DATABASE_URL": "postgresql://payments:x@db.example.com/payments"},
                                          "args": {"db_plaintext_opt_out": "lab"}}, DB_TLS),
    ("database_url_no_database", {"env": {"DATABASE_URL": "postgresql://payments:x@db.example.com:5432?sslmode=require"}},
     "app1: DATABASE_URL: the PostgreSQL URL names no database"),
    ("database_url_other_scheme", {"env": {"DATABASE_URL": "mysql://payments:x@db.example.com/payments"}},
     "app1: DATABASE_URL: the PostgreSQL URL must be a postgresql://"),
    ("database_url_bad_sslmode", {"env": {"DATABASE_URL": "postgresql://db.example.com/payments?sslmode=sometimes"}},
     "app1: DATABASE_URL: the PostgreSQL URL has sslmode='sometimes'"),
    ("redis_remote", {"env": {"REDIS_URL": "redis://:x@cache.example.com:6379/0"}},
     f"app1: REDIS_URL of production must use TLS to reach cache.example.com: {REDIS_ADVICE}"),
    ("redis_remote_ipv6", {"env": {"REDIS_URL": "redis://:x@[2001:db8::7]:6379/0"}},
     f"app1: REDIS_URL of production must use TLS to reach [2001:db8::7]: {REDIS_ADVICE}"),
    ("redis_remote_without_password", {"env": {"REDIS_URL": "redis://cache.example.com/0"}},
     "app1: REDIS_URL of production must use TLS to reach cache.example.com"),
    ("override_blank", {"args": {"staging_gate_override": "  "}},
     "staging_gate_override needs a reason: -e 'staging_gate_override=\"why this release skips staging\"'"),
    ("override_not_text", {"args": {"staging_gate_override": True}}, "staging_gate_override needs a reason"),
    ("max_age_zero", {"args": {"staging_gate_max_age_days": 0}},
     "preflight_staging_gate_max_age_days must be a number of days above 0 and at most 365 (got 0)"),
    ("max_age_over_a_year", {"args": {"staging_gate_max_age_days": 400}}, "at most 365 (got 400)"),
    ("max_age_nan", {"args": {"staging_gate_max_age_days": "nan"}}, "preflight_staging_gate_max_age_days"),
    ("max_age_inf", {"args": {"staging_gate_max_age_days": float("inf")}}, "preflight_staging_gate_max_age_days"),
    ("max_age_negative", {"args": {"staging_gate_max_age_days": -1}}, "preflight_staging_gate_max_age_days"),
    ("max_age_newline", {"args": {"staging_gate_max_age_days": "7\n"}}, "preflight_staging_gate_max_age_days"),
    ("gate_source_is_the_environment", {"args": {"staging_gate_source": "production"}},
     "preflight_staging_gate_source cannot be the environment being deployed (production)"),
    ("lease_text", {"args": {"lock_lease_seconds": "forever"}},
     "deploy_lock_lease_seconds must be a whole number of seconds from 10 to 86400 (got forever)"),
    ("lease_too_short", {"args": {"lock_lease_seconds": 2}}, "from 10 to 86400 (got 2)"),
    ("lease_too_long", {"args": {"lock_lease_seconds": 86401}}, "from 10 to 86400 (got 86401)"),
    ("lease_fraction", {"args": {"lock_lease_seconds": 900.5}}, "deploy_lock_lease_seconds"),
    ("lease_newline", {"args": {"lock_lease_seconds": "900\n"}}, "deploy_lock_lease_seconds"),
    ("stripe_base_credentials", {"args": {"stripe_api_base": "https://user:pw@api.stripe.com"}},
     "payments_stripe_api_base must be an http(s) URL without credentials or path (got https://***@api.stripe.com)"),
    ("stripe_base_path", {"args": {"stripe_api_base": "https://evil.example.com/../../etc"}},
     "payments_stripe_api_base must be an http(s) URL without credentials or path (got https://evil.example.com/../../etc)"),
    ("stripe_base_newline", {"args": {"stripe_api_base": "https://api.stripe.com\n"}}, "payments_stripe_api_base"),
    ("frontend_url_file", {"args": {"frontend_urls": {"production": "https://127.0.0.1:8443", "staging": "file:///etc/passwd"}}},
     "traffic_frontend_urls.staging must be an http(s) URL without credentials or path (got file:///etc/passwd)"),
    ("frontend_url_format_spec", {"args": {"frontend_urls": {"production": "{key:>99999}"}}},
     "traffic_frontend_urls.production must be an http(s) URL without credentials or path (got {key:>99999})"),
    ("frontend_url_credentials", {"args": {"frontend_urls": {"production": "http://u:p@127.0.0.1:1"}}},
     "traffic_frontend_urls.production must be an http(s) URL without credentials or path (got http://***@127.0.0.1:1)"),
] + [(f"separator_{ord(sep[-1]):04x}_{len(sep)}", {"env": {"HASH_SALT": f"salt{sep}PAYMENTS_AUTH_DISABLED=1"}},
      "app1: HASH_SALT holds a line break or another line separator") for sep in SEPARATORS]


@pytest.mark.parametrize(("spec", "expect"), [pytest.param(spec, expect, id=name) for name, spec, expect in FAILING])
def test_each_check_refuses_its_bad_input(spec: dict[str, t.Any], expect: str) -> None:
    found = problems_of(spec)
    assert len(found) == 1 and expect in found[0], found


# id, a change each check must let through
PASSING = [
    ("release_version_large", {"args": {"release_version": "10.200.3000"}}),
    ("ports_as_text", {"host": {"payments_colour_ports": {"blue": "8001", "green": "8002"}}}),
    ("systemd_without_supervisor_config", {"host": {"release_service_manager": "systemd", "release_supervisor_config": REMOVE}}),
    ("service_manager_default", {"host": {"release_service_manager": REMOVE, "release_supervisor_config": REMOVE}}),
    ("encryption_key_upper_case", {"env": {"ENCRYPTION_KEY": "AB" * 32}}),
    ("extra_env_variable", {"env": {"LOG_LEVEL": "info"}}),
    ("database_url_require", {"env": {"DATABASE_URL": "postgresql://payments:x@db.example.com/payments?sslmode=require"}}),
    ("database_url_loopback_with_opt_out", {"env": {"DATABASE_URL": "postgresql://payments:x@127.0.0.1:5432/payments"},
                                            "args": {"db_plaintext_opt_out": "lab database on 127.0.0.1 without TLS"}}),
    ("database_url_socket_with_opt_out", {"env": {"DATABASE_URL": "postgresql://payments@%2Frun%2Fpostgresql/payments"},
                                          "args": {"db_plaintext_opt_out": "the database is on this host"}}),
    ("database_url_plaintext_where_tls_is_not_required", {"env": {"DATABASE_URL": "postgresql://payments:x@db.example.com/payments"},
                                                          "args": {"tls_environments": ["staging"]}}),
    ("redis_tls", {"env": {"REDIS_URL": "rediss://:x@cache.example.com:6380/0?ssl_ca_certs=/etc/ca.pem"}}),
    ("redis_localhost", {"env": {"REDIS_URL": "redis://:x@localhost:6379/0"}}),
    ("redis_loopback_ipv6", {"env": {"REDIS_URL": "redis://:x@[::1]:6379/0"}}),
    ("redis_unset", {"env": {"REDIS_URL": REMOVE}, "args": {"required_env": ["DATABASE_URL"]}}),
    ("redis_remote_where_tls_is_not_required", {"env": {"REDIS_URL": "redis://:x@cache.example.com:6379/0"},
                                                "args": {"tls_environments": []}}),
    ("override_with_a_reason", {"args": {"staging_gate_override": "hotfix for the checkout outage"}}),
    ("max_age_a_year", {"args": {"staging_gate_max_age_days": 365}}),
    ("max_age_half_a_day", {"args": {"staging_gate_max_age_days": "0.5"}}),
    ("gate_source_is_the_environment_without_a_gate", {"args": {"staging_gate_source": "production",
                                                                "staging_gate_environments": ["staging"]}}),
    ("lease_shortest", {"args": {"lock_lease_seconds": 10}}),
    ("lease_longest", {"args": {"lock_lease_seconds": "86400"}}),
    ("stripe_base_emulator", {"args": {"stripe_api_base": "http://127.0.0.1:12111/"}}),
    ("stripe_base_ipv6", {"args": {"stripe_api_base": "https://[::1]:8443"}}),
    ("frontend_without_other_environments", {"args": {"frontend_urls": {"production": "http://127.0.0.1:1"}}}),
]


@pytest.mark.parametrize("spec", [pytest.param(spec, id=name) for name, spec in PASSING])
def test_each_check_lets_a_good_input_through(spec: dict[str, t.Any]) -> None:
    assert problems_of(spec) == []


def test_problems_are_reported_together_in_the_order_of_the_checks() -> None:
    """Bad inputs that each cause one problem alone cause all of them at once (two hosts, the settings)."""
    chosen = ["release_version_word", "ports_equal", "env_lacks_two", "redis_remote", "override_blank", "lease_too_short",
              "frontend_url_credentials"]
    cases = {name: spec for name, spec, dummy in FAILING if name in chosen}
    alone = [problem for name in chosen for problem in problems_of(cases[name])]
    merged: dict[str, dict[str, t.Any]] = {"args": {}, "host": {}, "env": {}}
    for name in chosen:
        for part, changes in cases[name].items():
            merged[part].update(changes)
    args = changed(merged)
    args["hostvars"]["app2"]["payments_env"] = {"HASH_SALT": "s\u2028x"}
    found = deploy_input_problems(**args)
    app2 = [p for p in found if p.startswith("app2: ")]
    assert [p for p in found if not p.startswith("app2: ")] == alone
    assert len(app2) == 2 and "lacks" in app2[0] and "HASH_SALT holds a line break" in app2[1]
    # every app host's problems come after the release's and before the settings'
    assert found.index(app2[0]) > found.index(alone[1]) and found.index(app2[-1]) < found.index(alone[-3])


SECRETS = {"DATABASE_URL": "postgresql://payments:Db5ecretPassw0rd@db.example.com/payments",
           "REDIS_URL": "redis://:Red1sPa@ssW0rd@cache.example.com:6379/0",
           "STRIPE_SECRET_KEY": "sk_live_Str1peSecretValue\nX=1", "STRIPE_WEBHOOK_SECRET": "whsec_W3bhookSecret\u2028",
           "ENCRYPTION_KEY": "Encrypt1onKeyNotHex", "HASH_SALT": "Hash5altValue\x85", "PAYMENTS_API_KEY": "Ap1KeyValue\r"}
SECRET_REDIS_URLS = ["redis://Red1sPa#ssW0rd@cache.example.com/0", "redis://:Red1sPa/ssW0rd@cache.example.com/0",
                     "redis://Red1sPa@ssW0rd@cache.example.com/0"]
SECRET_DATABASE_URLS = ["postgresql://payments:Db5ecret@Passw0rd@db.example.com/payments",
                        "postgresql://payments:Db5ecret/Passw0rd@db.example.com/payments",
                        "postgresql://payments:Db5ecretPassw0rd@db.example.com:54x2/payments",
                        "postgresql://payments:Db5ecretPassw0rd@db.example.com/",
                        "host=db.example.com password=Db5ecret'Passw0rd dbname=payments"]


# Distinctive pieces of the secret values above: no problem may hold any of them.
SECRET_PIECES = ["Db5ecret", "Passw0rd", "Red1sPa", "ssW0rd", "Str1peSecretValue", "W3bhookSecret", "Encrypt1onKeyNotHex",
                 "Hash5altValue", "Ap1KeyValue", "Str1peBaseSecret", "Fr0ntendSecret"]


@pytest.mark.parametrize("redis_url", SECRET_REDIS_URLS)
@pytest.mark.parametrize("database_url", SECRET_DATABASE_URLS)
def test_no_secret_value_appears_in_any_problem(redis_url: str, database_url: str) -> None:
    env = {**SECRETS, "REDIS_URL": redis_url, "DATABASE_URL": database_url}
    found = problems_of({"host": {"payments_env": env}, "args": {"stripe_api_base": "https://acct:Str1peBaseSecret@x.example.com",
                                                                 "frontend_urls": {"production": "http://op:Fr0ntendSecret@h:1"}}})
    text = "\n".join(found)
    for name in ("ENCRYPTION_KEY", "STRIPE_SECRET_KEY", "REDIS_URL", "DATABASE_URL", "payments_stripe_api_base",
                 "traffic_frontend_urls.production"):
        assert name in text  # the problems are there, with no value
    for piece in SECRET_PIECES:
        assert piece not in text, (piece, found)


def test_a_payments_env_of_the_wrong_type_is_named_without_its_value() -> None:
    found = problems_of({"host": {"payments_env": "DATABASE_URL=postgresql://u:TopSecretPw@db/x"}})
    assert found == ["app1: payments_env must be a dict of environment variables (got a string)"]


# id, the change, a text the problems must hold: a value of the wrong type or a missing key is a problem, never an error
WRONG_TYPES = [
    ("app_hosts_a_string", {"args": {"app_hosts": "app1"}}, "inventory group production_app must be a list of hosts (got a string)"),
    ("app_hosts_null", {"args": {"app_hosts": None}}, "inventory group production_app must be a list of hosts (got null)"),
    ("required_env_holds_a_list", {"args": {"required_env": ["DATABASE_URL", ["HASH_SALT"]]}}, "app1: payments_env lacks ['HASH_SALT']"),
    ("required_env_a_string", {"args": {"required_env": "DATABASE_URL"}}, "preflight_required_env must be a list (got a string)"),
    ("tls_environments_a_string", {"args": {"tls_environments": "production"}}, "preflight_tls_environments must be a list (got a string)"),
    ("gate_environments_a_dict", {"args": {"staging_gate_environments": {"production": True}}},
     "preflight_staging_gate_environments must be a list (got a dict)"),
    ("frontend_urls_a_list", {"args": {"frontend_urls": ["https://127.0.0.1:8443"]}},
     "traffic_frontend_urls must be a dict of environment: URL (got a list)"),
    ("frontend_urls_a_string", {"args": {"frontend_urls": "production"}}, "traffic_frontend_urls must be a dict"),
    ("frontend_url_a_number", {"args": {"frontend_urls": {"production": 8443}}}, "traffic_frontend_urls.production must be an http(s) URL"),
    ("frontend_url_null", {"args": {"frontend_urls": {"production": None}}}, "traffic_frontend_urls.production must be an http(s) URL"),
    ("hostvars_null", {"args": {"hostvars": None}}, "hostvars must be a dict of every host's variables (got null)"),
    ("host_not_in_the_inventory", {"args": {"app_hosts": ["app1", "app9"]}}, "app9: the host is not in the inventory"),
    ("host_variables_a_list", {"args": {"hostvars": {"app1": ["x"], "app2": GOOD_HOST}}}, "app1: its variables are not a dict (got a list)"),
    ("ports_a_list", {"host": {"payments_colour_ports": [8001, 8002]}}, "app1: payments_colour_ports must define blue and green ports"),
    ("ports_a_string", {"host": {"payments_colour_ports": "8001,8002"}}, "app1: payments_colour_ports must define blue and green ports"),
    ("ports_null", {"host": {"payments_colour_ports": {"blue": None, "green": None}}}, "app1: payments_colour_ports needs two different ports"),
    ("ports_nan", {"host": {"payments_colour_ports": {"blue": float("nan"), "green": float("inf")}}},
     "app1: payments_colour_ports needs two different ports"),
    ("service_manager_a_list", {"host": {"release_service_manager": ["systemd"]}}, "app1: release_service_manager must be systemd or supervisor"),
    ("payments_env_empty", {"host": {"payments_env": {}}}, "app1: payments_env lacks DATABASE_URL, REDIS_URL"),
    ("payments_env_null", {"host": {"payments_env": None}}, "app1: payments_env must be a dict of environment variables (got null)"),
    ("payments_env_a_list", {"host": {"payments_env": ["DATABASE_URL"]}}, "app1: payments_env must be a dict of environment variables (got a list)"),
    ("env_value_a_dict", {"env": {"DATABASE_URL": {"host": "db"}}}, "app1: DATABASE_URL: the PostgreSQL URL"),
    ("env_value_false", {"env": {"ENCRYPTION_KEY": False}}, "app1: ENCRYPTION_KEY must be 32 bytes as 64 hex characters"),
    ("environment_null", {"args": {"environment": None}}, "deploy_environment must be the name of an environment (got null)"),
    ("environment_missing", {"args": {"environment": REMOVE, "app_group": REMOVE}},
     "deploy_environment must be the name of an environment (got nothing)"),
    ("override_a_list", {"args": {"staging_gate_override": []}}, "staging_gate_override needs a reason"),
    ("max_age_a_list", {"args": {"staging_gate_max_age_days": [7]}}, "preflight_staging_gate_max_age_days"),
    ("lease_a_list", {"args": {"lock_lease_seconds": [900]}}, "deploy_lock_lease_seconds must be a whole number"),
    ("stripe_base_a_dict", {"args": {"stripe_api_base": {"url": "https://api.stripe.com"}}}, "payments_stripe_api_base"),
]


@pytest.mark.parametrize(("spec", "expect"), [pytest.param(spec, expect, id=name) for name, spec, expect in WRONG_TYPES])
def test_a_wrong_type_is_a_problem_not_an_error(spec: dict[str, t.Any], expect: str) -> None:
    found = problems_of(spec)
    assert all(isinstance(problem, str) for problem in found)
    assert any(expect in problem for problem in found), found


def test_null_values_are_reported_as_they_are() -> None:
    """A variable set to null is not an unset one: the unset release_version is "nothing", an unset override is fine,
    and a null override has no reason."""
    args = arguments()
    args.update(release_version=None, staging_gate_override=None)
    found = deploy_input_problems(**args)
    assert found == ["release_version must be set to X.Y.Z (got None)", "staging_gate_override needs a reason: "
                     "-e 'staging_gate_override=\"why this release skips staging\"'"]


def test_the_app_group_defaults_to_the_environment_s_group() -> None:
    args = arguments()
    args.pop("app_group")
    args["app_hosts"] = []
    assert "inventory group production_app has no hosts" in deploy_input_problems(**args)


ROLE_PLAYBOOK = f"""
- name: Render the preflight role's problems on every load balancer
  hosts: loadbalancers
  gather_facts: false
  vars_files:
    - {COLLECTION_ROOT}/roles/preflight/defaults/main.yml
    - {COLLECTION_ROOT}/roles/preflight/vars/main.yml
  tasks:
    - name: Keep them
      ansible.builtin.set_fact:
        found_problems: "{{{{ preflight_problems_json | from_json }}}}"
    - name: Write them
      ansible.builtin.copy:
        content: "{{{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, 'found_problems'))) | to_json }}}}"
        dest: "{{{{ result_file }}}}"
        mode: "0600"
      run_once: true
"""


def role_problems(tmp_path: Path, load_balancers: dict[str, dict[str, t.Any]]) -> dict[str, list[str]]:
    """The problems the preflight role's variables give on each load balancer (its own variables), rendered by one
    ansible-playbook run: two app hosts of production, one with a bad HASH_SALT, both with a variable that creates the
    file ``read-marker`` when it is templated (the checks read only the variables they need)."""
    app = {**GOOD_HOST, "unneeded": f"{{{{ lookup('ansible.builtin.pipe', 'touch {tmp_path / 'read-marker'}') }}}}"}
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                  "traffic_frontend_urls": {"production": "https://127.0.0.1:8443"}},
                         "children": {"loadbalancers": {"hosts": load_balancers},
                                      "production_app": {"hosts": {
                                          "app1": {**app, "payments_env": {**GOOD_ENV, "HASH_SALT": "salt\u2028X=1"}},
                                          "app2": app}}}}}
    (tmp_path / "inventory.yml").write_text(json.dumps(inventory), encoding="utf-8")
    (tmp_path / "play.yml").write_text(ROLE_PLAYBOOK, encoding="utf-8")
    result_file = tmp_path / "problems.json"
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    run_env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_DIR), ANSIBLE_LOCALHOST_WARNING="0")
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp_path / "inventory.yml"),
                           str(tmp_path / "play.yml"), "-e", f"result_file={result_file}"], capture_output=True, text=True,
                          env=run_env, cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found: dict[str, list[str]] = json.loads(result_file.read_text(encoding="utf-8"))
    return found


def test_the_role_passes_its_variables_and_tells_unset_from_null(tmp_path: Path) -> None:
    found = role_problems(tmp_path, {"lb-good": {"release_version": "1.2.3"}, "lb-unset": {},
                                     "lb-null": {"release_version": "1.2.3", "staging_gate_override": None,
                                                 "deploy_lock_lease_seconds": 5}})
    salt = "app1: HASH_SALT holds a line break or another line separator"
    assert found["lb-good"] == [salt]
    assert not (tmp_path / "read-marker").exists()
    assert found["lb-unset"] == ["release_version must be set to X.Y.Z (got nothing)", salt]
    # a null override is set, with no reason: refused (the staging gate skips its refusal when an override is set)
    assert found["lb-null"] == [salt, "staging_gate_override needs a reason: -e 'staging_gate_override=\"why this release skips staging\"'",
                                "deploy_lock_lease_seconds must be a whole number of seconds from 10 to 86400 (got 5)"]

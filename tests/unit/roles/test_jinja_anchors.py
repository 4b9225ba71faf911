"""The Jinja ``match`` validations of the roles and playbooks refuse a value with a trailing newline.

Every end-anchored ``match('...')`` pattern and every ``*_pattern`` variable of the files below is evaluated the way
Ansible evaluates it (its ``match`` test is ``re.match``; the pattern is a Jinja string literal) on a good value and on that value plus
"\\n"; ``$`` would take the newline.
"""

from __future__ import annotations

import re

import jinja2
import pytest
import yaml

from conftest import COLLECTION_ROOT

FILES = ["roles/smoke_test/vars/main.yml", "roles/rollback_mirror/tasks/validate.yml", "roles/release/tasks/fetch.yml",
         "playbooks/unlock.yml", "playbooks/migrate.yml"]
# A value each pattern must take; a pattern missing here fails the test, so that a new one gets checked too.
GOOD = {
    r"^[0-9]+\Z": "12",
    r"^[0-9]+(\.[0-9]+)?\Z": "2.5",
    r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z": "https://smoke-test.invalid",
    r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z": "smoke@example.com",
    r"^https?://[A-Za-z0-9.\[\]:-]+(:[0-9]{1,5})?(/[^\s@]*)?\Z": "http://127.0.0.1:8080/api",
    r"^[0-9A-Za-z][0-9A-Za-z.+_-]*\Z": "1.2.0",
    r"^[0-9a-f]{64}\Z": "ab" * 32,
    r"^[A-Za-z0-9_-]+\Z": "production",
    r"^\d+\.\d+\.\d+\Z": "1.2.0",
}
LITERAL = re.compile(r"""\bmatch\('((?:[^'\\]|\\.)*)'\)""")


def regex_of(literal: str) -> str:
    """The regular expression a Jinja string literal holds (Jinja reads its backslash escapes)."""
    return jinja2.Environment().from_string("{{ '" + literal + "' }}").render()


def patterns() -> list[tuple[str, str]]:
    """``(file, regex)`` of every end-anchored validation pattern of FILES (prefix checks such as ^https?:// aside)."""
    found = []
    for name in FILES:
        text = (COLLECTION_ROOT / name).read_text()
        found += [(name, regex_of(literal)) for literal in LITERAL.findall(text)]
        found += [(name, value) for _key, value in _pattern_vars(yaml.safe_load(text))]
    return [(name, regex) for name, regex in found if regex.endswith(("$", "\\Z"))]


def _pattern_vars(data: object) -> list[tuple[str, str]]:
    if isinstance(data, dict):
        own = [(k, v) for k, v in data.items() if str(k).endswith("_pattern") and isinstance(v, str)]
        return own + [item for v in data.values() for item in _pattern_vars(v)]
    if isinstance(data, list):
        return [item for v in data for item in _pattern_vars(v)]
    return []


def match(value: str, pattern: str) -> bool:
    """Ansible's ``match`` test (importing Ansible's test plugins here would set up its display for the whole run)."""
    return re.match(pattern, value) is not None


def evaluate(pattern: str, value: str) -> bool:
    env = jinja2.Environment()
    env.tests["match"] = match
    return env.from_string("{{ value is match(pattern) }}").render(value=value, pattern=pattern) == "True"


def test_the_files_have_validation_patterns() -> None:
    assert {name for name, _pattern in patterns()} == set(FILES)


@pytest.mark.parametrize(("name", "pattern"), patterns())
def test_a_trailing_newline_is_refused(name: str, pattern: str) -> None:
    assert pattern in GOOD, f"{name}: no good value known for {pattern!r}"
    good = GOOD[pattern]
    assert evaluate(pattern, good), f"{name}: {pattern!r} refuses {good!r}"
    assert not evaluate(pattern, good + "\n"), f"{name}: {pattern!r} takes {good!r} with a trailing newline"

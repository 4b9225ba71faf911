"""Unit tests of release_secret_scan_info: real release trees, secrets and key shapes found but never shown, links not
followed, special files never opened."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import tempfile
import typing as t
from pathlib import Path
from urllib.parse import quote

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _release_secret_scan as scan_lib
from ansible_collections.payments.deploy.plugins.modules import release_secret_scan_info

ALNUM = string.ascii_letters + string.digits


def run(capsys: pytest.CaptureFixture[str], **args: t.Any) -> tuple[dict[str, t.Any], str]:
    with patch_module_args(args), pytest.raises(SystemExit):
        release_secret_scan_info.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def token(length: int = 32) -> str:
    return "".join(secrets.choice(ALNUM) for dummy in range(length))


def key(prefix: str, length: int = 32) -> str:
    """A key-shaped token, put together here so that this file holds no key itself."""
    return prefix + "_" + token(length)


def pem_private_key(kind: str = "RSA ") -> str:
    body = "\n".join(token(64) for dummy in range(4))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----\n"


def write(root: Path, rel: str, content: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def lab_like_env() -> dict[str, str]:
    return {
        "STRIPE_SECRET_KEY": key("sk_live"),
        "STRIPE_WEBHOOK_SECRET": key("whsec"),
        "ENCRYPTION_KEY": secrets.token_hex(32),
        "HASH_SALT": secrets.token_urlsafe(24) + "/+=",  # percent-encoding changes it
        "DATABASE_URL": f"postgresql://payments:{quote(secrets.token_urlsafe(18) + '/+@', safe='')}@127.0.0.1:5432/payments",
        "REDIS_URL": f"rediss://:{secrets.token_urlsafe(24)}@127.0.0.1:6380/0",
    }


CLEAN_CODE = '''"""Payment service settings: every secret comes from the environment."""
import os

STRIPE_SECRET_KEY = os.environ["STRIPE_SECRET_KEY"]
DATABASE_URL = os.environ["DATABASE_URL"]
'''

# Code that handles keys without holding one: prefixes, patterns, headers, placeholders.
PREFIX_CHECKS = '''import re

LIVE_PREFIXES = ("sk_live_", "rk_live_")
KEY_SHAPE = re.compile(r"^(sk|rk)_(live|test)_[A-Za-z0-9]{24,}$")


def is_live(key: str) -> bool:
    return key.startswith("sk_live_") or key[:8] == "rk_live_"


def check_webhook_secret(secret: str) -> None:
    if not secret.startswith("whsec_"):
        raise ValueError("STRIPE_WEBHOOK_SECRET must start with whsec_ (for example whsec_...)")


def is_private_key(pem: str) -> bool:
    return pem.lstrip().startswith("-----BEGIN PRIVATE KEY-----") or "-----BEGIN RSA PRIVATE KEY-----" in pem


EXAMPLE_ENV = "STRIPE_SECRET_KEY=sk_test_...  # set in the environment, never here"
'''


def clean_tree(root: Path) -> Path:
    write(root, "payment_service/__init__.py", "")
    write(root, "payment_service/settings.py", CLEAN_CODE)
    write(root, "payment_service/keys.py", PREFIX_CHECKS)
    write(root, "requirements.txt", "gunicorn==23.0.0\nstripe==12.0.0\n")
    write(root, "static/logo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return root


def test_a_clean_tree_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = clean_tree(tmp_path / "1.1.0")
    result, dummy = run(capsys, path=str(root), secrets=lab_like_env())
    assert result["passed"] is True and result["findings"] == [] and result["skipped_files"] == []
    assert result["changed"] is False
    assert result["files"] == 5
    assert result["bytes"] == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert result["directory"] == str(root.resolve()) and result["excluded"] == 0
    assert isinstance(result["seconds"], float)
    assert "path" not in result  # AnsibleModule would add the directory's owner, mode and size to a result with one


def test_prefix_checks_and_headers_in_code_are_not_findings() -> None:
    assert scan_lib.find(PREFIX_CHECKS.encode(), [], True) == []
    # the shortest key is a prefix and 16 letters and digits; 15 is not a key
    for prefix in ("sk_live", "sk_test", "rk_live", "rk_test", "whsec"):
        assert scan_lib.find(f"x = '{prefix}_{token(15)}'".encode(), [], True) == []
        assert len(scan_lib.find(f"x = '{prefix}_{token(16)}'".encode(), [], True)) == 1
        # inside a longer word it is not a key
        assert scan_lib.find(f"x = 'my{prefix}_{token(30)}'".encode(), [], True) == []


def test_secrets_and_keys_are_found_by_path_line_and_kind_and_never_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = lab_like_env()
    db_password = env["DATABASE_URL"].split(":")[2].split("@")[0]  # percent-encoded, as in the URL
    hardcoded = {"sk": key("sk_live"), "rk": key("rk_test", 20), "whsec": key("whsec", 32)}
    pem, escaped_pem = pem_private_key(), pem_private_key("").replace("\n", "\\n")
    root = clean_tree(tmp_path / "1.1.0")
    write(root, "payment_service/settings.py", CLEAN_CODE + f'\nFALLBACK_KEY = "{env["STRIPE_SECRET_KEY"]}"\n')
    write(root, "payment_service/crypto.py", f"import os\n\nSALT = '{quote(env['HASH_SALT'], safe='')}'\n")
    write(root, "config/database.ini", f"[db]\nhost = 127.0.0.1\nport = 5432\nuser = payments\npassword = {db_password}\n")
    write(root, "payment_service/stripe_client.py", f"import stripe\n\nstripe.api_key = '{hardcoded['sk']}'\nRESTRICTED = '{hardcoded['rk']}'\n")
    write(root, "payment_service/webhooks.py", f"\n\nWEBHOOK_SECRET = b'{hardcoded['whsec']}'\n")
    write(root, "deploy/tls/server.key", pem)
    write(root, "deploy/keys.json", '{\n  "kid": "2026-11",\n  "alg": "RS256",\n  "key": "' + escaped_pem + '"\n}\n')
    write(root, "lib/native.so", b"\x7fELF\x02\x01\x01\x00" + b"\x00\n" * 3 + b"\xff" + env["ENCRYPTION_KEY"].encode() + b"\x00\n")
    write(root, "docs/redis.txt", f"Redis: {env['REDIS_URL']}\n")
    result, out = run(capsys, path=str(root), secrets=env)
    assert result["passed"] is False
    assert [(f["path"], f["line"], f["kind"]) for f in result["findings"]] == [
        ("config/database.ini", 5, "DATABASE_URL password"),
        ("deploy/keys.json", 4, "PEM private key"),
        ("deploy/tls/server.key", 1, "PEM private key"),
        ("docs/redis.txt", 1, "REDIS_URL"),
        ("docs/redis.txt", 1, "REDIS_URL password"),
        ("lib/native.so", 4, "ENCRYPTION_KEY"),
        ("payment_service/crypto.py", 3, "HASH_SALT"),
        ("payment_service/settings.py", 7, "STRIPE_SECRET_KEY"),
        ("payment_service/settings.py", 7, "Stripe live secret key"),
        ("payment_service/stripe_client.py", 3, "Stripe live secret key"),
        ("payment_service/stripe_client.py", 4, "Stripe test restricted key"),
        ("payment_service/webhooks.py", 3, "Stripe webhook signing secret"),
    ]
    # neither the module's output nor the unmasked result of the scan holds a value, a key or 8 characters of one
    raw = json.dumps(scan_lib.scan_tree(str(root), env))
    texts = [needle.decode() for dummy, needle in scan_lib.needles_of(env)] + list(hardcoded.values())
    texts += [line for line in pem.splitlines() if "PRIVATE KEY" not in line]
    for text in texts:
        for start in range(0, len(text) - 8 + 1):
            assert text[start:start + 8] not in out and text[start:start + 8] not in raw, text[start:start + 8]


@pytest.mark.parametrize("layout", ["file", "yaml_block", "python_adjacent_strings", "json_escaped", "legacy_encrypted", "openssh"])
def test_private_keys_are_found_however_they_are_written(layout: str) -> None:
    begin, body = "-----BEGIN " + "{}PRIVATE KEY-----", token(64)
    text = {
        "file": begin.format("") + "\n" + body + "\n",
        "yaml_block": "tls:\n  key: |\n    " + begin.format("EC ") + "\n    " + body + "\n",
        "python_adjacent_strings": 'KEY = (\n    "' + begin.format("RSA ") + '\\n"\n    "' + body + '\\n"\n)\n',
        "json_escaped": '{"key": "' + begin.format("ENCRYPTED ") + "\\n" + body + '"}',
        "legacy_encrypted": begin.format("RSA ") + "\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n" + body + "\n",
        "openssh": begin.format("OPENSSH ") + "\r\n" + body + "\r\n",
    }[layout]
    line = text.split("-----BEGIN")[0].count("\n") + 1
    assert scan_lib.find(text.encode(), [], True) == [(line, "PEM private key")]
    # the header alone, or followed by code, is not a key
    header_only = text.split("PRIVATE KEY-----")[0] + "PRIVATE KEY-----\")\n    return parse_private_key(data)\n"
    assert scan_lib.find(header_only.encode(), [], True) == []


def test_key_shapes_can_be_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"HASH_SALT": secrets.token_hex(32)}
    root = write(tmp_path / "r", "app.py", f"KEY = '{key('sk_live')}'\nSALT = '{env['HASH_SALT']}'\n").parent
    result, dummy = run(capsys, path=str(root), secrets=env, patterns=False)
    assert [(f["line"], f["kind"]) for f in result["findings"]] == [(2, "HASH_SALT")]


def test_each_kind_is_reported_once_per_line() -> None:
    secret = secrets.token_hex(16)
    data = f"{secret} {quote(secret)} {secret}\nnothing\n{secret}{secret}".encode()
    assert scan_lib.find(data, scan_lib.needles_of({"ENCRYPTION_KEY": secret}), True) == [(1, "ENCRYPTION_KEY"), (3, "ENCRYPTION_KEY")]
    many = ("x" * 100 + "\n").encode() * 50000 + secret.encode()
    assert scan_lib.find(many, scan_lib.needles_of({"K": secret}), True) == [(50001, "K")]


def test_a_big_file_is_skipped_and_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "r"
    big = write(root, "static/bundle.js", "var k = '" + key("sk_live") + "';\n" + "x" * 4096)
    write(root, "app.py", "print('small')\n")
    opened = record_opens(monkeypatch)
    result, dummy = run(capsys, path=str(root), max_file_bytes=1024)
    assert result["skipped_files"] == [{"path": "static/bundle.js", "reason": f"{big.stat().st_size} bytes, larger than max_file_bytes (1024)"}]
    assert result["findings"] == [] and result["passed"] is True
    assert result["files"] == 1 and result["bytes"] == len("print('small')\n")
    assert str(big.resolve()) not in opened and len(opened) == 1


def test_a_file_that_grew_past_the_limit_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "grown.txt", "x" * 2048)
    assert scan_lib.read_regular(str(path), 1024) == (None, "larger than max_file_bytes (1024) when read")
    assert scan_lib.read_regular(str(path), 2048) == (b"x" * 2048, None)


def record_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    real_open = os.open

    def recording_open(path: t.Any, *args: t.Any, **kwargs: t.Any) -> int:
        opened.append(os.fsdecode(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    return opened


def test_symbolic_links_are_not_followed(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"ENCRYPTION_KEY": secrets.token_hex(32)}
    outside = write(tmp_path / "etc", "payments.env", f"ENCRYPTION_KEY={env['ENCRYPTION_KEY']}\n")
    write(tmp_path / "etc", "more/secret.txt", env["ENCRYPTION_KEY"])
    root = tmp_path / "release"
    write(root, "app/main.py", "print('hello')\n")
    (root / "app/env").symlink_to(outside)  # absolute, leaving the tree
    (root / "config").symlink_to("../etc/more")  # a directory outside
    (root / "app/main_link.py").symlink_to("main.py")  # inside: the target is scanned under its own path
    (root / "app/loop").symlink_to(root / "app")  # a directory inside: not descended into again
    (root / "app/gone.py").symlink_to("missing.py")
    opened = record_opens(monkeypatch)
    result, dummy = run(capsys, path=str(root), secrets=env)
    assert result["passed"] is True and result["files"] == 1
    assert "skipped" not in result  # Ansible would read it as a skipped task
    assert result["skipped_files"] == [
        {"path": "app/env", "reason": "symbolic link leaving the tree (not followed)"},
        {"path": "app/gone.py", "reason": "broken symbolic link"},
        {"path": "config", "reason": "symbolic link leaving the tree (not followed)"},
    ]
    assert opened == [str(root.resolve() / "app/main.py")]


def test_a_link_to_the_release_is_resolved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    release = write(tmp_path / "releases/1.1.0", "app.py", f"KEY = '{key('sk_test')}'\n").parent
    (tmp_path / "current").symlink_to("releases/1.1.0")
    result, dummy = run(capsys, path=str(tmp_path / "current"))
    assert result["directory"] == str(release.resolve())
    assert result["findings"] == [{"path": "app.py", "line": 1, "kind": "Stripe test secret key"}]


@pytest.mark.timeout(20)
def test_special_files_are_skipped_without_blocking(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "r"
    write(root, "app.py", "pass\n")
    os.mkfifo(root / "events.fifo")
    opened = record_opens(monkeypatch)
    result, dummy = run(capsys, path=str(root))
    assert result["skipped_files"] == [{"path": "events.fifo", "reason": "not a regular file (FIFO, not opened)"}]
    assert result["passed"] is True and result["files"] == 1
    assert opened == [str(root.resolve() / "app.py")]
    # a FIFO put in a file's place after the listing is opened without blocking and not read
    assert scan_lib.read_regular(str(root / "events.fifo"), 1024) == (None, "not a regular file (FIFO, not read)")


def test_more_files_than_max_files_are_refused_before_reading(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "r"
    for number in range(6):
        write(root, f"pkg{number % 2}/module{number}.py", "pass\n")
    write(root, "pkg0/__pycache__/module0.cpython-313.pyc", b"\x00" * 16)  # excluded: not counted
    opened = record_opens(monkeypatch)
    result, dummy = run(capsys, path=str(root), max_files=5)
    assert result["failed"] is True
    assert "more than max_files (5) files" in result["msg"] and "findings" not in result
    assert opened == []
    result, dummy = run(capsys, path=str(root), max_files=6)
    assert result["files"] == 6 and result["excluded"] == 1


def test_check_mode_scans_the_same_way(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write(tmp_path / "r", "app.py", f"\nKEY = '{key('rk_live')}'\n").parent
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    normal, dummy = run(capsys, path=str(root))
    checked, dummy = run(capsys, path=str(root), _ansible_check_mode=True)
    assert checked["changed"] is False and checked["passed"] is False
    assert checked["findings"] == normal["findings"] == [{"path": "app.py", "line": 2, "kind": "Stripe live restricted key"}]
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_exclude_patterns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "r"
    write(root, "app/__pycache__/main.cpython-313.pyc", f"K='{key('sk_live')}'")
    write(root, "legacy.pyc", f"K='{key('sk_live')}'")
    write(root, "tests/fixtures/webhook.json", f'{{"secret": "{key("whsec")}"}}')
    write(root, "app/tests/fixtures/keep.txt", f"{key('whsec')}")
    result, dummy = run(capsys, path=str(root))
    assert [f["path"] for f in result["findings"]] == ["app/tests/fixtures/keep.txt", "tests/fixtures/webhook.json"]
    assert result["excluded"] == 2
    result, dummy = run(capsys, path=str(root), exclude=["tests/fixtures/**", "*.pyc"])
    assert [f["path"] for f in result["findings"]] == ["app/tests/fixtures/keep.txt"]
    result, dummy = run(capsys, path=str(root), exclude=[])
    assert len(result["findings"]) == 4 and result["excluded"] == 0


@pytest.mark.parametrize(("pattern", "matches", "misses"), [
    ("*.pyc", ["a.pyc", "x/y/a.pyc"], ["a.py", "a.pyc/b"]),
    ("**/__pycache__/**", ["__pycache__/a", "x/__pycache__/y/z"], ["x/__pycache__x/a"]),
    ("docs/*.md", ["docs/a.md"], ["docs/x/a.md", "x/docs/a.md"]),
    ("docs/**/*.md", ["docs/a.md", "docs/x/y/a.md"], ["a.md"]),
    ("file?.txt", ["file1.txt", "x/fileA.txt"], ["file10.txt", "file/.txt"]),
    ("[!t]*.py", ["app.py"], ["test.py"]),
    ("v[0-9].txt", ["v1.txt"], ["vx.txt"]),
    ("[bad", ["[bad", "x/[bad"], ["b"]),
])
def test_glob_regex(pattern: str, matches: list[str], misses: list[str]) -> None:
    regex = scan_lib.glob_regex(pattern)
    assert all(regex.match(path) for path in matches), pattern
    assert not any(regex.match(path) for path in misses), pattern


def test_a_matching_directory_is_left_out_whole() -> None:
    patterns = [scan_lib.glob_regex("build/*")]
    assert scan_lib.is_excluded("build", True, patterns) and scan_lib.is_excluded("build/x", True, patterns)
    assert not scan_lib.is_excluded("build", False, patterns)


def test_bad_paths_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "file.py", "pass\n")
    for path, expected in [("releases/1.1.0", "path must be absolute"), (str(tmp_path / "file.py"), "is not a directory"),
                           (str(tmp_path / "absent"), "cannot be read: No such file or directory"),
                           (f"{tmp_path}\n/etc", "path must be one line"), (f"{tmp_path}\u2028x", "path must be one line")]:
        result, dummy = run(capsys, path=path)
        assert result["failed"] is True and expected in result["msg"], (path, result["msg"])


def test_option_problems_are_reported_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, dummy = run(capsys, path=str(tmp_path), secrets={"HASH_SALT": "abc1", "bad name!": "a-long-enough-value",
                                                             "PORT": 54321678}, max_files=0, exclude=["/etc/**", "../x"])
    assert result["failed"] is True
    for part in ("secrets.HASH_SALT is shorter than 8 characters", "secrets: the name 'bad name!'", "secrets.PORT must be a string",
                 "max_files must be from 1", "exclude[0] must be relative", "exclude[1] must not hold '..'"):
        assert part in result["msg"], result["msg"]


def test_a_tree_the_user_cannot_read_is_an_error() -> None:
    # a directory everybody may enter, holding a directory and a file only their owner may read
    shared = Path(tempfile.mkdtemp(prefix="release-scan-"))
    try:
        shared.chmod(0o755)
        write(shared, "app.py", "pass\n")
        private_dir = shared / "private"
        private_dir.mkdir(mode=0o700)
        private_file = write(shared, "settings.py", "pass\n")
        as_root = os.geteuid() == 0
        private_file.chmod(0o600 if as_root else 0o000)
        if not as_root:
            private_dir.chmod(0o000)
        if as_root:
            os.seteuid(65534)  # read it as nobody; root takes its identity back below
        try:
            with pytest.raises(scan_lib.ScanError, match="private in .* cannot be read: Permission denied"):
                scan_lib.scan_tree(str(shared), {})
            with pytest.raises(scan_lib.ScanError, match="settings.py cannot be read: Permission denied"):
                scan_lib.scan_tree(str(shared), {}, exclude=["private"])
        finally:
            if os.getuid() == 0:
                os.seteuid(0)
            private_dir.chmod(0o700)
    finally:
        shutil.rmtree(shared)

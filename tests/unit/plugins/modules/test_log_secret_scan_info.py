"""Unit tests of log_secret_scan_info: real log files, card numbers by Luhn, secrets found but never shown."""

from __future__ import annotations

import datetime
import json
import os
import random
import secrets
import shutil
import tempfile
import tracemalloc
import typing as t
from pathlib import Path
from urllib.parse import quote

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.payments.deploy.plugins.module_utils import _log_scan as scan_lib
from ansible_collections.payments.deploy.plugins.modules import log_secret_scan_info

# Stripe's documented test card numbers (https://docs.stripe.com/testing): still card numbers in a log.
STRIPE_TEST_CARDS = ["4242424242424242", "5555555555554444", "378282246310005", "6011111111111117", "3056930009020004",
                     "4000056655665556", "2223003122003222"]


def run(capsys: pytest.CaptureFixture[str], **args: t.Any) -> tuple[dict[str, t.Any], str]:
    with patch_module_args(args), pytest.raises(SystemExit):
        log_secret_scan_info.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def write_log(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def luhn_breaking(number: str) -> str:
    """The number with its last digit changed so that the Luhn check fails."""
    for digit in "0123456789":
        candidate = number[:-1] + digit
        if not scan_lib.luhn(candidate.encode()):
            return candidate
    raise AssertionError("unreachable")


def filler(count: int) -> list[str]:
    return [f"2026-11-28 22:00:{i % 60:02d},123 INFO payment_service.api request_id=req_{i:08x} status=200 ms={i % 97}"
            for i in range(count)]


@pytest.mark.parametrize("card", STRIPE_TEST_CARDS)
def test_stripe_test_cards_are_reported_in_every_printed_form(tmp_path: Path, capsys: pytest.CaptureFixture[str], card: str) -> None:
    if len(card) == 16:
        grouped = [" ".join(card[i:i + 4] for i in range(0, 16, 4)), "-".join(card[i:i + 4] for i in range(0, 16, 4))]
    else:
        grouped = [f"{card[:4]} {card[4:10]} {card[10:]}"]
    log = write_log(tmp_path / "app.log", filler(5) + [f"charge card={card} ok"] + [f"card {g}" for g in grouped])
    result, dummy = run(capsys, paths=[str(log)])
    assert result["passed"] is False
    assert [(f["line"], f["kind"]) for f in result["findings"]] == [(6 + i, f"card number ending {card[-4:]}") for i in range(1 + len(grouped))]


def test_luhn_failures_and_non_card_numbers_are_not_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).timestamp()
    # epoch times near now, in ms, us and ns, picked so that they pass the Luhn check (a card number would)
    stamps = []
    for scale in (1000, 1000000, 1000000000):
        value = int(now * scale)
        while not scan_lib.luhn(str(value).encode()):
            value += 1
        stamps.append(str(value))
    uuid_digits = "12345678-1234-1234-1234-123456789012"
    lines = ([f"card={luhn_breaking(card)}" for card in STRIPE_TEST_CARDS]
             + [f"ts={stamp} event=charge.succeeded" for stamp in stamps]
             + [f"id={uuid_digits}", "order 4242 4242 4242 424 ", "sku=94242424242424242x", "h=a4242424242424242",
                "metrics 200 1532 0 4242 9", "ref=7242424242424245"])
    assert all(scan_lib.luhn(s.encode()) for s in stamps + ["7242424242424245"])
    result, dummy = run(capsys, paths=[str(write_log(tmp_path / "app.log", lines))])
    assert result["findings"] == [], result["findings"]
    assert result["passed"] is True


def test_a_timestamp_length_outside_the_window_is_a_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 16 digits starting with 4 read as microseconds are in the year 2110: not a time the service logs
    result, dummy = run(capsys, paths=[str(write_log(tmp_path / "app.log", ["at 4242424242424242"]))])
    assert [f["kind"] for f in result["findings"]] == ["card number ending 4242"]


def test_a_huge_log_is_read_for_its_last_lines_only(tmp_path: Path) -> None:
    log = tmp_path / "huge.log"
    total = 300_000
    with log.open("w", encoding="utf-8") as stream:
        for number, line in enumerate(filler(total), start=1):
            if number == 10:
                line += " card=4242424242424242"  # outside the tail: not scanned
            if number == total - 5:
                line += " card=5555555555554444"
            stream.write(line + "\n")
    size = log.stat().st_size
    tracemalloc.start()
    try:
        summary, findings = scan_lib.scan_file(str(log), 2000, 1 << 26, [], True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary == {"path": str(log), "first_line": total - 2000 + 1, "lines": 2000}
    assert findings == [{"path": str(log), "line": total - 5, "kind": "card number ending 4444"}]
    assert size > 20 * 1024 * 1024
    assert peak < size / 20, f"{peak} bytes held for a {size}-byte file"


@pytest.mark.parametrize(("content", "lines", "expected_first", "expected_count"), [
    (b"a\nb\nc\n", 2, 2, 2),
    (b"a\nb\nc", 2, 2, 2),
    (b"a\nb\nc\n", 10, 1, 3),
    (b"", 5, 1, 0),
    (b"\n\n\n", 2, 2, 2),
])
def test_tail_boundaries(tmp_path: Path, content: bytes, lines: int, expected_first: int, expected_count: int) -> None:
    log = tmp_path / "small.log"
    log.write_bytes(content)
    summary, dummy = scan_lib.scan_file(str(log), lines, 1 << 20, [], True)
    assert (summary["first_line"], summary["lines"]) == (expected_first, expected_count)


def test_binary_garbage_is_scanned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    noise = random.Random(7)
    garbage = bytes(noise.choice(b"\x00\xff\xfe\x80abc \t\r") for dummy in range(200_000))
    log = tmp_path / "garbage.log"
    log.write_bytes(garbage + b"\n\xff\x00card 4242424242424242\xc3\n" + garbage[:1000] + b"\n")
    result, dummy = run(capsys, paths=[str(log)], lines=50)
    assert [f["kind"] for f in result["findings"]] == ["card number ending 4242"]
    assert result["findings"][0]["line"] == garbage.count(b"\n") + 2


def test_max_bytes_bounds_a_single_giant_line(tmp_path: Path) -> None:
    log = tmp_path / "one-line.log"
    log.write_bytes(b"x" * 500_000 + b" 4242424242424242 " + b"y" * 10_000)
    summary, findings = scan_lib.scan_file(str(log), 10, 16384, [], True)
    assert summary["first_line"] == 1 and summary["lines"] == 1
    assert [f["kind"] for f in findings] == ["card number ending 4242"]
    cut, missed = scan_lib.scan_file(str(log), 10, 8192, [], True)
    assert cut["lines"] == 1 and not missed  # the card lies before the last 8192 bytes


def test_unreadable_files_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_log(tmp_path / "good.log", ["fine"])
    result, dummy = run(capsys, paths=[str(good), str(tmp_path / "missing.log")])
    assert result["failed"] is True and "missing.log cannot be read" in result["msg"]
    result, dummy = run(capsys, paths=[str(tmp_path)])
    assert result["failed"] is True and "is not a regular file" in result["msg"]


def test_a_file_the_user_may_not_read_is_an_error() -> None:
    # a directory everybody may enter, holding a file only its owner may read
    shared = Path(tempfile.mkdtemp(prefix="log-scan-"))
    try:
        shared.chmod(0o755)
        log = write_log(shared / "private.log", ["secret stuff"])
        log.chmod(0o600 if os.geteuid() == 0 else 0o000)
        if os.geteuid() == 0:
            os.seteuid(65534)  # read it as nobody; root takes its identity back below
        try:
            with pytest.raises(scan_lib.LogScanError, match="private.log cannot be read: Permission denied"):
                scan_lib.scan_file(str(log), 10, 4096, [], True)
        finally:
            if os.getuid() == 0:
                os.seteuid(0)
    finally:
        shutil.rmtree(shared)


def lab_like_env() -> dict[str, str]:
    return {
        "STRIPE_SECRET_KEY": "sk_live_" + secrets.token_urlsafe(24),
        "ENCRYPTION_KEY": secrets.token_hex(32),
        "HASH_SALT": secrets.token_hex(32),
        "DATABASE_URL": f"postgresql://payments:{quote(secrets.token_urlsafe(18) + '/+@', safe='')}@127.0.0.1:5432/payments",
        "REDIS_URL": f"rediss://:{secrets.token_urlsafe(24)}@127.0.0.1:6380/0",
    }


def test_secrets_are_found_and_never_returned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = lab_like_env()
    db_password = env["DATABASE_URL"].split(":")[2].split("@")[0]
    redis_password = env["REDIS_URL"].split(":")[2].split("@")[0]
    lines = filler(3) + [
        f"config STRIPE_SECRET_KEY={env['STRIPE_SECRET_KEY']}",
        f"key={quote(env['ENCRYPTION_KEY'])}",
        f"salt {env['HASH_SALT']} in use",
        f"connecting with password {db_password}",  # percent-encoded, as in the URL
        f"auth {redis_password}",
        f"dsn={env['DATABASE_URL']}",
        "clean line",
    ]
    log = write_log(tmp_path / "app.log", lines)
    args = {"paths": [str(log)], "secrets": [{"name": name, "value": value} for name, value in env.items()]}
    result, out = run(capsys, **args)
    kinds = {(f["line"], f["kind"]) for f in result["findings"]}
    assert {(4, "STRIPE_SECRET_KEY"), (5, "ENCRYPTION_KEY"), (6, "HASH_SALT"), (7, "DATABASE_URL password"),
            (8, "REDIS_URL password"), (9, "DATABASE_URL")} <= kinds
    assert not any(line == 10 for line, dummy in kinds)
    # neither the module's output nor the unmasked result of the scan holds a value or 8 characters of one
    needles: list[tuple[str, bytes]] = []
    for name, value in env.items():
        needles += scan_lib.secret_needles(name, value)
    raw = json.dumps(scan_lib.scan_file(str(log), 2000, 1 << 20, needles, True))
    for dummy, needle in needles:
        text = needle.decode()
        for start in range(0, len(text) - 8 + 1):
            assert text[start:start + 8] not in out and text[start:start + 8] not in raw


def test_a_clean_log_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = lab_like_env()
    log = write_log(tmp_path / "app.log", filler(500))
    result, dummy = run(capsys, paths=[str(log)], secrets=[{"name": n, "value": v} for n, v in env.items()])
    assert result["passed"] is True and result["findings"] == []
    assert result["scanned"] == [{"path": str(log), "first_line": 1, "lines": 500}]


def test_card_numbers_can_be_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "app.log", ["card=4242424242424242"])
    result, dummy = run(capsys, paths=[str(log)], card_numbers=False)
    assert result["passed"] is True

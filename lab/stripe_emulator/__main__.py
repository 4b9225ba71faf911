"""Command line: ``python -m stripe_emulator --host 127.0.0.1 --port N --keys-file F [--state-file F] ...``.

Prints ``stripe emulator listening on http://HOST:PORT`` once it accepts connections; SIGTERM or SIGINT
stop it cleanly (the state file, when there is one, is written within a second of a change and once more on exit).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import cards, sdk_catalog
from .server import Emulator, make_server
from .store import Settings, Store

KEY_PREFIXES = ("sk_live_", "sk_test_", "rk_live_", "rk_test_")


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stripe_emulator", description="A stateful emulator of part of the Stripe API, for the lab.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0 picks a free one)")
    parser.add_argument("--keys-file", type=Path, required=True,
                        help='JSON: {"account": "acct_...", "keys": ["sk_test_...", ...]}; only these keys are accepted')
    parser.add_argument("--state-file", type=Path, help="keep the state in this JSON file across restarts")
    parser.add_argument("--webhook-endpoint-limit", type=_positive, default=16, help="webhook endpoints per mode (default 16)")
    parser.add_argument("--webhook-max-attempts", type=_positive, default=5, help="delivery attempts per event and endpoint (default 5)")
    parser.add_argument("--webhook-backoff", type=_seconds, default=0.5, help="first retry delay in seconds, doubled each time (0.5)")
    parser.add_argument("--webhook-backoff-max", type=_seconds, default=8.0, help="longest retry delay in seconds (default 8)")
    parser.add_argument("--webhook-timeout", type=_seconds, default=10.0, help="seconds to wait for an endpoint to answer (default 10)")
    parser.add_argument("--webhook-log-size", type=_positive, default=10_000,
                        help="finished deliveries kept in the delivery log, oldest dropped first (default 10000)")
    parser.add_argument("--api-version", default=sdk_catalog.SDK_API_VERSION,
                        help=f"the account's default API version (default {sdk_catalog.SDK_API_VERSION}, the SDK's)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    return parser.parse_args(argv)


def load_keys(path: Path) -> tuple[str, frozenset[str], dict[str, str]]:
    """The account id, API keys and live cards, with a clear error for a file that is not what it should be."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"stripe emulator: cannot read the keys file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("account"), str) or not data["account"].startswith("acct_"):
        raise SystemExit(f"stripe emulator: {path} must hold an object with \"account\": \"acct_...\"")
    keys = data.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k.startswith(KEY_PREFIXES) for k in keys):
        raise SystemExit(f"stripe emulator: {path}: \"keys\" must be a non-empty list of keys starting with one of {', '.join(KEY_PREFIXES)}")
    live_cards = data.get("live_cards", {})
    if not isinstance(live_cards, dict) or not all(isinstance(k, str) and k.startswith("pm_") and v in cards.TEST_CARDS
                                                   for k, v in live_cards.items()):
        raise SystemExit(f"stripe emulator: {path}: \"live_cards\" must map pm_ ids to test cards such as pm_card_visa")
    return data["account"], frozenset(keys), live_cards


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    account, keys, live_cards = load_keys(args.keys_file)
    if args.api_version not in sdk_catalog.api_versions():
        raise SystemExit(f"stripe emulator: unknown API version {args.api_version}")
    settings = Settings(account=account, keys=keys, api_version=args.api_version, webhook_endpoint_limit=args.webhook_endpoint_limit,
                        webhook_max_attempts=args.webhook_max_attempts, webhook_backoff_s=args.webhook_backoff,
                        webhook_backoff_max_s=args.webhook_backoff_max, webhook_timeout_s=args.webhook_timeout,
                        delivery_log_size=args.webhook_log_size,
                        state_file=args.state_file, live_cards=live_cards)
    try:
        store = Store(settings)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"stripe emulator: cannot load the state file: {exc}") from None
    emulator = Emulator(store, quiet=args.quiet)
    try:
        server = make_server(args.host, args.port, emulator)
    except OSError as exc:
        raise SystemExit(f"stripe emulator: cannot listen on {args.host}:{args.port}: {exc}") from None

    def stop(signum: int, _frame: Any) -> None:
        # shutdown() waits for serve_forever to return, so it must run on another thread than the one serving.
        threading.Thread(target=server.shutdown, name=f"stop-on-{signal.Signals(signum).name}", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emulator.worker.start()
    host, port = server.server_address[:2]
    print(f"stripe emulator listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        emulator.worker.stop()
        server.server_close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

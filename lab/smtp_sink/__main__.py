"""python -m smtp_sink --smtp-port P --http-port Q --maildir DIR: the lab's SMTP sink.

SMTP and HTTP listen on 127.0.0.1 only. Every message is accepted (no authentication, any sender and recipient)
and stored; nothing is ever relayed. SIGTERM or SIGINT stops both servers.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from .http_api import make_server
from .mailbox import Mailbox

HOST = "127.0.0.1"


class StoringHandler:
    """aiosmtpd handler: store every message in the mailbox."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        message_id = self.mailbox.save(str(envelope.mail_from or ""), [str(rcpt) for rcpt in envelope.rcpt_tos],
                                       content)
        print(f"smtp sink: stored {message_id} for {len(envelope.rcpt_tos)} recipient(s)", flush=True)
        return "250 Message accepted for delivery"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="smtp_sink", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smtp-port", type=int, required=True, help="SMTP port on 127.0.0.1")
    parser.add_argument("--http-port", type=int, required=True, help="HTTP API port on 127.0.0.1")
    parser.add_argument("--maildir", type=Path, required=True, help="directory the messages are stored in")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM or SIGINT."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    mailbox = Mailbox(args.maildir)
    controller = Controller(StoringHandler(mailbox), hostname=HOST, port=args.smtp_port, enable_SMTPUTF8=True)
    controller.start()
    api = make_server(args.http_port, mailbox)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=api.shutdown, daemon=True).start()  # shutdown() waits for serve_forever

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"smtp sink: SMTP on {HOST}:{args.smtp_port}, HTTP on http://{HOST}:{args.http_port}, "
          f"messages in {args.maildir}", flush=True)
    try:
        api.serve_forever()
    finally:
        api.server_close()
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Changes a published artifact after it was signed: appends bytes to NAME-VERSION.tar.gz and, with --republish,
writes its .sha256 again to match (what someone who can write to the artifact store could do; only the signature
tells). Prints the new sha256."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--republish", action="store_true", help="rewrite the .sha256 file to match the changed artifact")
    args = parser.parse_args()
    with args.artifact.open("ab") as handle:
        handle.write(b"\0tampered after signing\n")
    digest = hashlib.sha256(args.artifact.read_bytes()).hexdigest()
    if args.republish:
        args.artifact.with_name(args.artifact.name + ".sha256").write_text(f"{digest}  {args.artifact.name}\n", encoding="ascii")
    print(digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scan an installed release tree for secret values and key-shaped tokens, reporting where and what kind, never the value.

Private to the payments.deploy collection: the interface may change without notice.

The tree is listed first (nothing is read until the number of files is known to be within the limit), then every
regular file is read whole, as bytes, up to a size limit. Symbolic links are never followed: a link whose target lies
inside the tree is not needed (the target is scanned under its own path), one that leaves the tree or leads nowhere is
reported as skipped. FIFOs, sockets and devices are reported as skipped and never opened.
"""

from __future__ import annotations

import os
import re
import stat
import typing as t

from ansible_collections.payments.deploy.plugins.module_utils._log_scan import MIN_SECRET_LENGTH, secret_needles

DEFAULT_EXCLUDE = ["**/__pycache__/**", "*.pyc", "*.pyo"]
DEFAULT_MAX_FILE_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_FILES = 20000
CHUNK = 1 << 20
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .-]{0,63}\Z")

# A key is a prefix followed by at least 16 letters and digits, so that code testing for a prefix
# (startswith("sk_live_"), a prefix in a message) is not one. Not inside a longer word or token.
_STRIPE_KEY = re.compile(rb"(?<![A-Za-z0-9])(sk|rk)_(live|test)_[A-Za-z0-9]{16,}")
_WEBHOOK_SECRET = re.compile(rb"(?<![A-Za-z0-9])whsec_[A-Za-z0-9]{16,}")
# A PEM private key: its header, then key material (a base64 run of 40 characters, or the Proc-Type header of an
# encrypted legacy key) after a line break, a written "\n" or the quotes and "+" of a string split over lines.
# The header alone (code that looks for it) is not a key.
_PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ ){0,4}PRIVATE KEY-----(?:\\[rn]|[\s\"'+,(]){1,64}(?:Proc-Type:|[A-Za-z0-9+/]{40})")
_STRIPE_KINDS = {
    (b"sk", b"live"): "Stripe live secret key",
    (b"sk", b"test"): "Stripe test secret key",
    (b"rk", b"live"): "Stripe live restricted key",
    (b"rk", b"test"): "Stripe test restricted key",
}
WEBHOOK_SECRET_KIND = "Stripe webhook signing secret"
PRIVATE_KEY_KIND = "PEM private key"

_SPECIAL_KINDS = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                  (stat.S_ISBLK, "block device"))


class ScanError(Exception):
    """The tree cannot be scanned (completely)."""


class Entry(t.NamedTuple):
    rel: str  # relative to the root, with "/"
    full: str


# --- exclude patterns -------------------------------------------------------------------------------------------------


def _class(pattern: str, start: int) -> tuple[str, int] | None:
    """The regex of the character class that opens at ``start`` ("[") and the index after it; None when it is not closed."""
    index = start + 1
    negate = index < len(pattern) and pattern[index] in "!^"
    if negate:
        index += 1
    first = index
    while index < len(pattern) and (pattern[index] != "]" or index == first):
        index += 1
    if index >= len(pattern):
        return None
    body = "".join("\\" + char if char in "\\[]&~|^" else char for char in pattern[first:index])
    return ("[^/" + body + "]" if negate else "[" + body + "]"), index + 1


def glob_regex(pattern: str) -> re.Pattern[str]:
    """The regex of an exclude pattern, matched against a path relative to the root with "/" separators.

    ``*`` and ``?`` stay within one path component, ``**`` crosses them (``**/`` matches no component too), ``[...]``
    is a class (``[!...]`` negated), an unclosed ``[`` is itself. A pattern without "/" matches a name at any depth.
    """
    if "/" not in pattern:
        pattern = "**/" + pattern
    parts, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif char == "*":
            parts.append("[^/]*")
            index += 1
        elif char == "?":
            parts.append("[^/]")
            index += 1
        elif char == "[" and (found := _class(pattern, index)) is not None:
            parts.append(found[0])
            index = found[1]
        else:
            parts.append(re.escape(char))
            index += 1
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def pattern_problem(pattern: str) -> str | None:
    """Why an exclude pattern is refused, or None."""
    if not pattern.strip():
        return "is empty"
    if len(pattern) > 1024:
        return "is longer than 1024 characters"
    if pattern.splitlines() != [pattern] or "\x00" in pattern:
        return "must be one line"
    if pattern.startswith("/"):
        return "must be relative to path (no leading '/')"
    if ".." in pattern.split("/"):
        return "must not hold '..'"
    return None


def is_excluded(rel: str, is_dir: bool, patterns: list[re.Pattern[str]]) -> bool:
    """Whether a path matches a pattern; a directory also when everything below it would (``dir/**``, ``dir/*``)."""
    return any(p.match(rel) or (is_dir and p.match(rel + "/")) for p in patterns)


# --- listing the tree -------------------------------------------------------------------------------------------------


def _inside(target: str, root: str) -> bool:
    return target == root or target.startswith(root if root.endswith(os.sep) else root + os.sep)


def _special_kind(mode: int) -> str:
    for test, name in _SPECIAL_KINDS:
        if test(mode):
            return name
    return "unknown type"


def _too_large(size: int, max_file_bytes: int) -> str:
    return f"{size} bytes, larger than max_file_bytes ({max_file_bytes})"


def list_tree(root: str, exclude: list[str], max_files: int, max_file_bytes: int) -> tuple[list[Entry], list[dict[str, str]], int]:
    """(regular files to read, skipped entries with their reason, number of entries excluded), in path order.

    ``root`` is a real path (no symbolic link in it). ScanError for a directory that cannot be listed and for more than
    ``max_files`` entries that are not directories (outside ``exclude``), before any file is read.
    """
    patterns = [glob_regex(pattern) for pattern in exclude]
    files: list[Entry] = []
    skipped: list[dict[str, str]] = []
    excluded = counted = 0
    pending = [""]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(os.path.join(root, directory) if directory else root) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            raise ScanError(f"{directory or '.'} in {root} cannot be read: {exc.strerror or exc}") from exc
        subdirectories = []
        for entry in entries:
            rel = f"{directory}/{entry.name}" if directory else entry.name
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError as exc:
                raise ScanError(f"{rel} in {root} cannot be read: {exc.strerror or exc}") from exc
            mode = info.st_mode
            if is_excluded(rel, stat.S_ISDIR(mode), patterns):
                excluded += 1
                continue
            if stat.S_ISDIR(mode):
                subdirectories.append(rel)
                continue
            counted += 1
            if counted > max_files:
                raise ScanError(f"the tree {root} holds more than max_files ({max_files}) files outside exclude; "
                                "raise max_files or exclude what need not be scanned")
            if stat.S_ISLNK(mode):
                target = os.path.realpath(entry.path)  # resolves the name only, opens nothing
                if not _inside(target, root):
                    skipped.append({"path": rel, "reason": "symbolic link leaving the tree (not followed)"})
                elif not os.path.exists(entry.path):
                    skipped.append({"path": rel, "reason": "broken symbolic link"})
                # else: the target is in the tree and scanned under its own path
            elif stat.S_ISREG(mode):
                if info.st_size > max_file_bytes:
                    skipped.append({"path": rel, "reason": _too_large(info.st_size, max_file_bytes)})
                else:
                    files.append(Entry(rel, entry.path))
            else:
                skipped.append({"path": rel, "reason": f"not a regular file ({_special_kind(mode)}, not opened)"})
        pending.extend(reversed(subdirectories))
    return files, skipped, excluded


def read_regular(path: str, max_file_bytes: int) -> tuple[bytes | None, str | None]:
    """(content, None), or (None, why it is skipped) when the file changed into something else or grew too large.

    Opened without following a link and without blocking (a FIFO put in a file's place must not hang the scan), and
    checked to be a regular file once open.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ScanError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, f"not a regular file ({_special_kind(info.st_mode)}, not read)"
        chunks, total = [], 0
        while total <= max_file_bytes:
            chunk = os.read(fd, min(CHUNK, max_file_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise ScanError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if total > max_file_bytes:
        return None, f"larger than max_file_bytes ({max_file_bytes}) when read"
    return b"".join(chunks), None


# --- finding ----------------------------------------------------------------------------------------------------------


def needles_of(secrets: t.Mapping[str, str]) -> list[tuple[str, bytes]]:
    """What to look for, by name: each value as it is and percent-encoded, and a URL's password alone."""
    return [needle for name, value in secrets.items() for needle in secret_needles(name, value)]


def _next_line(data: bytes, offset: int) -> int:
    newline = data.find(b"\n", offset)
    return len(data) if newline == -1 else newline + 1


def key_shapes(data: bytes) -> list[tuple[int, str]]:
    """(offset, kind) of every key-shaped token of ``data``."""
    hits: list[tuple[int, str]] = []
    # a substring test first: most files hold none of them, and it is many times faster than the expressions
    if b"k_live_" in data or b"k_test_" in data:
        hits += [(m.start(), _STRIPE_KINDS[(m.group(1), m.group(2))]) for m in _STRIPE_KEY.finditer(data)]
    if b"whsec_" in data:
        hits += [(m.start(), WEBHOOK_SECRET_KIND) for m in _WEBHOOK_SECRET.finditer(data)]
    if b"PRIVATE KEY-----" in data:
        hits += [(m.start(), PRIVATE_KEY_KIND) for m in _PEM_PRIVATE_KEY.finditer(data)]
    return hits


def find(data: bytes, needles: list[tuple[str, bytes]], shapes: bool) -> list[tuple[int, str]]:
    """(line, kind) of every hit in ``data``, each once, in order; a hit's line is the one where it starts."""
    hits: list[tuple[int, str]] = []
    for label, needle in needles:
        offset = data.find(needle)
        while offset != -1:
            hits.append((offset, label))
            # one hit of a kind per line is enough: go on from the next line
            offset = data.find(needle, _next_line(data, offset))
    if shapes:
        hits += key_shapes(data)
    found, line, counted_to = set(), 1, 0
    for offset, kind in sorted(hits):
        line += data.count(b"\n", counted_to, offset)
        counted_to = offset
        found.add((line, kind))
    return sorted(found)


def scan_tree(root: str, secrets: t.Mapping[str, str], shapes: bool = True, exclude: list[str] | None = None,
              max_files: int = DEFAULT_MAX_FILES, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> dict[str, t.Any]:
    """The result of a scan of ``root`` (a directory): files, bytes, skipped_files, excluded and findings (no value in any)."""
    root = os.path.realpath(root)
    files, skipped, excluded = list_tree(root, DEFAULT_EXCLUDE if exclude is None else exclude, max_files, max_file_bytes)
    needles = needles_of(secrets)
    findings: list[dict[str, t.Any]] = []
    scanned = total = 0
    for entry in files:
        data, reason = read_regular(entry.full, max_file_bytes)
        if data is None:
            skipped.append({"path": entry.rel, "reason": t.cast(str, reason)})
            continue
        scanned += 1
        total += len(data)
        findings += [{"path": entry.rel, "line": line, "kind": kind} for line, kind in find(data, needles, shapes)]
    skipped.sort(key=lambda item: item["path"])
    findings.sort(key=lambda item: (item["path"], item["line"], item["kind"]))
    return {"directory": root, "files": scanned, "bytes": total, "skipped_files": skipped, "excluded": excluded, "findings": findings}


# --- options ----------------------------------------------------------------------------------------------------------


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "...")


def option_problems(params: t.Mapping[str, t.Any]) -> list[str]:
    """Every problem with the module's options (``path`` is only checked for its form); no secret value in any."""
    problems = []
    path = params["path"]
    if not path or path.splitlines() != [path] or "\x00" in path:
        problems.append("path must be one line, the absolute path of the release directory")
    elif not os.path.isabs(path):
        problems.append(f"path must be absolute, not {_shown(path)}")
    for name, value in params["secrets"].items():
        if not isinstance(name, str) or not SECRET_NAME.match(name):
            problems.append(f"secrets: the name {_shown(str(name))} is not a variable name (letters, digits, '_', at most 64)")
        elif not isinstance(value, str):
            problems.append(f"secrets.{name} must be a string")
        elif len(value) < MIN_SECRET_LENGTH:
            problems.append(f"secrets.{name} is shorter than {MIN_SECRET_LENGTH} characters (it would match by chance)")
    if not 1 <= params["max_file_bytes"] <= 1 << 28:
        problems.append("max_file_bytes must be from 1 to 268435456 (256 MiB)")
    if not 1 <= params["max_files"] <= 1_000_000:
        problems.append("max_files must be from 1 to 1000000")
    for index, pattern in enumerate(params["exclude"]):
        problem = pattern_problem(pattern)
        if problem:
            problems.append(f"exclude[{index}] {problem}")
    return problems


def root_problem(path: str) -> str | None:
    """Why ``path`` cannot be scanned as a directory, or None."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"path {_shown(path)} cannot be read: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return f"path {_shown(path)} is not a directory"
    return None

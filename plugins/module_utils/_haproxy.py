# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Client for the HAProxy runtime API (the admin socket) and the map files it serves.

Private to the payments.deploy collection: the interface may change without notice.
Only the Python standard library is used, so this runs on any managed host.
"""

from __future__ import annotations

import csv
import re
import socket
import string
import time
import typing as t

from ansible_collections.payments.deploy.plugins.module_utils._files import write_text_atomic  # noqa: F401 (re-exported)
from ansible_collections.payments.deploy.plugins.module_utils._numbers import number_problem

# Colours and map keys go into runtime API commands verbatim: keep them to one safe word (matched in full).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# The only fields backend_template may use, each plain: no attribute, index, conversion or format spec.
TEMPLATE_FIELDS = ("key", "colour")

# First lines of the answers HAProxy gives when a command fails.
_ERROR_PREFIXES = (
    "unknown",
    "permission denied",
    "entry not found",
    "key not found",
    "missing",
    "require",
    "out of memory",
    "failed",
    "can't",
    "cannot",
    "no such",
    "'",
)

UP = "UP"


class HAProxyRuntimeError(Exception):
    """A runtime API command failed; carries the command and HAProxy's answer."""

    def __init__(self, message: str, command: str | None = None, answer: str | None = None) -> None:
        self.message = message
        self.command = command
        self.answer = answer
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line for people: what failed, which command, what HAProxy said."""
        text = self.message
        if self.command is not None:
            text += f" (command: {self.command!r}"
            if self.answer is not None:
                text += f"; HAProxy answered: {self.answer.strip()!r}"
            text += ")"
        return text


def haproxy_argument_spec() -> dict[str, dict[str, t.Any]]:
    """Options shared by the HAProxy modules (documented in the payments.deploy.haproxy fragment)."""
    return {
        "admin_socket": {"type": "path", "required": True},
        "map_file": {"type": "path", "required": True},
        "backend_template": {"type": "str", "default": "{key}_{colour}"},
        "socket_timeout": {"type": "float", "default": 5.0},
    }


def haproxy_option_problems(params: t.Mapping[str, t.Any]) -> list[str]:
    """Problems with the options every HAProxy module shares (the template, the socket timeout)."""
    problems = [p for p in (template_problem(params["backend_template"]),
                            number_problem("socket_timeout", params["socket_timeout"], maximum=300)) if p]
    return problems


def check_name(kind: str, value: str) -> str | None:
    """Return an error message when ``value`` cannot be sent safely as a map key or colour."""
    if isinstance(value, str) and NAME_PATTERN.fullmatch(value):
        return None
    shown = repr(value) if len(repr(value)) <= 140 else repr(value)[:60] + "..."
    return (
        f"{kind} {shown} is not a plain word: use up to 128 letters, digits and '_', '.', ':', '-', "
        "starting with a letter or digit"
    )


def check_map_path(path: str) -> str | None:
    """Return an error message when ``path`` cannot be sent as one runtime API argument."""
    if not path or any(c.isspace() or c in ";\\" for c in path):
        return f"map_file {path!r} must not be empty or contain whitespace, ';' or '\\'"
    return None


def template_problem(template: str) -> str | None:
    """Why ``template`` is not a backend template of plain ``{key}`` and ``{colour}`` fields, or None.

    ``str.format`` would otherwise follow attributes and indexes (``{key.foo}``, ``{key[x]}``) or build a value of any
    width (``{key:>999999999}``) from a template.
    """
    usage = "it must use {colour} and may use {key}, plain: no attributes, indexes, conversions or format specs"
    try:
        fields = [parsed[1:] for parsed in string.Formatter().parse(template) if parsed[1] is not None]
    except ValueError as exc:
        return f"backend_template {template!r} is invalid ({exc}); {usage}"
    bad = [name for name, spec, conversion in fields if name not in TEMPLATE_FIELDS or spec or conversion]
    if bad or "colour" not in [field[0] for field in fields]:
        return f"backend_template {template!r} is invalid; {usage}"
    return None


def backend_name(template: str, key: str, colour: str) -> str:
    """The backend a colour routes to, e.g. ``{key}_{colour}`` -> ``production_green``."""
    problem = template_problem(template)
    if problem:
        raise ValueError(problem)
    return template.format(key=key, colour=colour)


def backend_pattern(template: str, key: str) -> re.Pattern[str]:
    """A regex matching the backends of ``key`` for any colour, capturing the colour.

    The colour is one word without ``_`` (the usual separator), so ``production_eu_blue`` is not a colour of ``production``.
    """
    marker = "\0colour\0"
    literal = backend_name(template, key, marker)
    parts = [re.escape(part) for part in literal.split(marker)]
    return re.compile("^" + "(?P<colour>[A-Za-z0-9.:-]+)".join(parts) + r"\Z")


def _is_error_answer(answer: str) -> bool:
    first = answer.strip().splitlines()[0].lower() if answer.strip() else ""
    return first.startswith(_ERROR_PREFIXES)


def parse_show_map(text: str) -> dict[str, str]:
    """Parse ``show map <file>`` lines ``0x55d0c1 key value`` into ``{key: value}``.

    HAProxy looks up the first entry of a duplicated key; so does this.
    """
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split(None, 2)
        if len(fields) < 2 or not fields[0].startswith("0x"):
            raise ValueError(f"unexpected line in 'show map' output: {line!r}")
        entries.setdefault(fields[1], fields[2].strip() if len(fields) == 3 else "")
    return entries


def parse_show_stat(text: str) -> list[dict[str, str]]:
    """Parse ``show stat`` CSV into one dict per row, keyed by the header (pxname, svname, status, ...)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# pxname"):
        raise ValueError("'show stat' output does not start with the '# pxname,...' header")
    header = next(csv.reader([lines[0][2:]]))
    rows = []
    for values in csv.reader(lines[1:]):
        row = {name: value for name, value in zip(header, values) if name}
        rows.append(row)
    return rows


def servers_of(rows: t.Iterable[t.Mapping[str, str]], backend: str) -> dict[str, str] | None:
    """``{server: status}`` for ``backend`` from parsed ``show stat`` rows; None when the backend does not exist."""
    servers: dict[str, str] = {}
    found = False
    for row in rows:
        if row.get("pxname") != backend:
            continue
        found = True
        if row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        servers[row["svname"]] = row.get("status", "")
    return servers if found else None


def parse_map_text(text: str) -> dict[str, str]:
    """Parse the text of a map file (``key value`` lines, ``#`` comments) into ``{key: value}``."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split(None, 1)
        entries.setdefault(fields[0], fields[1].strip() if len(fields) == 2 else "")
    return entries


def render_map_text(entries: t.Mapping[str, str]) -> str:
    """Render ``{key: value}`` as map file text."""
    return "".join(f"{key} {value}\n" for key, value in entries.items())


def replace_map_value(text: str, key: str, value: str) -> str:
    """Set ``key`` to ``value`` in map file text, keeping comments, order and the other keys; append when absent."""
    out: list[str] = []
    found = False
    for line in text.splitlines():
        fields = line.split(None, 1)
        if fields and fields[0] == key and not line.lstrip().startswith("#"):
            found = True
            out.append(f"{key} {value}")
        else:
            out.append(line)
    if not found:
        out.append(f"{key} {value}")
    return "\n".join(out) + "\n"


def read_map_file(path: str) -> str | None:
    """The text of a map file, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_map_file(path: str, entries: t.Mapping[str, str]) -> None:
    """Write ``{key: value}`` as the map file at ``path``, atomically (see write_text_atomic)."""
    write_text_atomic(path, render_map_text(entries))


class HAProxyRuntime:
    """One command per connection to the admin socket, answers read to EOF.

    ``commands`` records what was sent, in order (a read repeated while polling is recorded once).
    """

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.commands: list[str] = []

    def _record(self, command: str) -> None:
        if not self.commands or self.commands[-1] != command or command.startswith(("set ", "add ", "del ")):
            self.commands.append(command)

    def command(self, command: str) -> str:
        """Send one command, return HAProxy's answer; raise HAProxyRuntimeError on an error answer."""
        if "\n" in command or "\r" in command:
            raise HAProxyRuntimeError("refusing to send a command with a line break", command)
        self._record(command)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.socket_path)
            except FileNotFoundError as exc:
                raise HAProxyRuntimeError(f"admin socket {self.socket_path} does not exist", command) from exc
            except PermissionError as exc:
                raise HAProxyRuntimeError(f"permission denied on admin socket {self.socket_path}", command) from exc
            except ConnectionRefusedError as exc:
                raise HAProxyRuntimeError(
                    f"admin socket {self.socket_path} refused the connection (is HAProxy running?)", command
                ) from exc
            except OSError as exc:
                raise HAProxyRuntimeError(f"cannot connect to admin socket {self.socket_path}: {exc}", command) from exc
            chunks = []
            try:
                sock.sendall(command.encode("utf-8") + b"\n")
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except socket.timeout as exc:
                raise HAProxyRuntimeError(
                    f"no complete answer from {self.socket_path} within {self.timeout}s", command
                ) from exc
            except OSError as exc:
                raise HAProxyRuntimeError(f"admin socket {self.socket_path} failed: {exc}", command) from exc
        finally:
            sock.close()
        answer = b"".join(chunks).decode("utf-8", errors="replace")
        if _is_error_answer(answer):
            raise HAProxyRuntimeError("HAProxy rejected the command", command, answer)
        return answer

    def _write(self, command: str) -> None:
        answer = self.command(command)
        if answer.strip():
            raise HAProxyRuntimeError("HAProxy did not confirm the change", command, answer)

    def show_map(self, map_path: str) -> dict[str, str]:
        """``{key: value}`` of the map as HAProxy holds it in memory."""
        command = f"show map {map_path}"
        answer = self.command(command)
        try:
            return parse_show_map(answer)
        except ValueError as exc:
            raise HAProxyRuntimeError(str(exc), command, answer) from exc

    def set_map_value(self, map_path: str, key: str, value: str) -> None:
        """``set map``: change the value of an existing key, atomically for every new request."""
        self._write(f"set map {map_path} {key} {value}")

    def add_map_value(self, map_path: str, key: str, value: str) -> None:
        """``add map``: add a key that is not in the map yet."""
        self._write(f"add map {map_path} {key} {value}")

    def del_map_value(self, map_path: str, key: str) -> None:
        """``del map``: remove a key."""
        self._write(f"del map {map_path} {key}")

    def show_stat(self) -> list[dict[str, str]]:
        """Rows of ``show stat`` (pxname, svname, status, check_status, ...)."""
        command = "show stat"
        answer = self.command(command)
        try:
            return parse_show_stat(answer)
        except ValueError as exc:
            raise HAProxyRuntimeError(str(exc), command, answer) from exc

    def backend_servers(self, backend: str) -> dict[str, str] | None:
        """``{server: status}`` of a backend, None when HAProxy has no such backend."""
        return servers_of(self.show_stat(), backend)


# --- the flip, as a function (the same steps as haproxy_switch: set or add, read back, persist, undo on failure) ---


class MapFlipError(Exception):
    """A flip that did not complete; the message says what became of the runtime value."""

    def __init__(self, message: str, cause: HAProxyRuntimeError | None = None, restored: bool = True) -> None:
        self.message = message if cause is None else f"{message}: {cause.describe()}"
        self.cause = cause
        self.restored = restored  # False when HAProxy may still serve the new value
        super().__init__(self.message)


def runtime_value_problem(map_path: str, key: str, value: str | None) -> str | None:
    """Why the value HAProxy serves for ``key`` cannot be sent back in a runtime API command (None: it can).

    It is read from HAProxy, not given by the caller, but it goes into a command all the same: a value such as
    ``blue; shutdown sessions server ...`` would be a second command. It must be a plain word, like any input colour.
    """
    if value is None or check_name("colour", value) is None:
        return None
    return (f"HAProxy serves {key} -> {value!r} from map {map_path}, which is not a plain colour (letters, digits and "
            "'_', '.', ':', '-'): it could not be set back safely after a failure, so nothing is sent; correct the map "
            "entry by hand first")


def restore_runtime_value(runtime: HAProxyRuntime, map_path: str, key: str, previous: str | None) -> tuple[bool, str]:
    """Put the runtime value of ``key`` back to ``previous`` (remove it when None); (worked, a sentence saying so).

    A ``previous`` that is not a plain word is never sent (see runtime_value_problem)."""
    problem = runtime_value_problem(map_path, key, previous)
    if problem:
        return False, f"refusing to set the runtime value back: {problem}"
    try:
        if previous is None:
            runtime.del_map_value(map_path, key)
        else:
            runtime.set_map_value(map_path, key, previous)
    except HAProxyRuntimeError as exc:
        return False, f"setting the runtime value back to {previous} FAILED too ({exc.describe()}): fix it by hand"
    if previous is None:
        return True, f"removed {key} from the runtime map again, as it was"
    return True, f"set the runtime value back to {previous}, so traffic still routes to {previous}"


def flip_runtime_value(runtime: HAProxyRuntime, map_path: str, key: str, value: str, previous: str | None) -> float:
    """Set (or add) ``key`` in the runtime map, read it back; return the epoch when HAProxy accepted it.

    Raises MapFlipError when HAProxy refused it (nothing changed) or serves something else afterwards (set back).
    """
    try:
        if previous is None:
            runtime.add_map_value(map_path, key, value)
        else:
            runtime.set_map_value(map_path, key, value)
    except HAProxyRuntimeError as exc:
        raise MapFlipError(f"switching {key} to {value} failed, nothing changed", exc) from exc
    switched_at = time.time()
    try:
        served = runtime.show_map(map_path).get(key)
    except HAProxyRuntimeError as exc:
        restored, how = restore_runtime_value(runtime, map_path, key, previous)
        raise MapFlipError(f"switched {key} to {value} but could not read it back; {how}", exc, restored) from exc
    if served != value:
        restored, how = restore_runtime_value(runtime, map_path, key, previous)
        raise MapFlipError(f"HAProxy accepted the change but serves {key} -> {served}, not {value}; {how}",
                           restored=restored)
    return switched_at


def persist_map_value(map_path: str, file_text: str | None, runtime_map: t.Mapping[str, str], key: str, value: str) -> None:
    """Rewrite the map file with ``key`` -> ``value``, keeping its comments and other keys; a missing file is rebuilt
    from what HAProxy serves. Raises OSError or UnicodeError when it cannot be written."""
    base = file_text if file_text is not None else render_map_text(runtime_map)
    write_text_atomic(map_path, replace_map_value(base, key, value))


def backend_rows(rows: t.Iterable[t.Mapping[str, str]], backend: str) -> dict[str, t.Mapping[str, str]] | None:
    """``{server: its show stat row}`` for ``backend`` (status, addr, check_status, ...); None when it does not exist."""
    servers: dict[str, t.Mapping[str, str]] = {}
    found = False
    for row in rows:
        if row.get("pxname") != backend:
            continue
        found = True
        if row.get("svname") not in ("FRONTEND", "BACKEND"):
            servers[row["svname"]] = row
    return servers if found else None

"""Route table: path templates such as /v1/customers/{id} matched to handlers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, TypeVar

H = TypeVar("H")
UNMATCHED = "unmatched"
_PARAM = re.compile(r"\{(\w+)\}")


def compile_template(template: str) -> re.Pattern[str]:
    """A regex for a template; each {name} matches one segment of letters, digits and '_'."""
    parts, last = [], 0
    for param in _PARAM.finditer(template):
        parts.append(re.escape(template[last:param.start()]))
        parts.append(f"(?P<{param.group(1)}>[A-Za-z0-9_]+)")
        last = param.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts) + r"\Z")


@dataclass(frozen=True)
class Match(Generic[H]):
    """What a request resolved to; the template doubles as the metrics label (never a raw path)."""

    template: str = UNMATCHED
    handler: H | None = None
    params: dict[str, str] = field(default_factory=dict)
    allowed: tuple[str, ...] = ()


class Router(Generic[H]):
    """Resolves a method and path to a handler; HEAD is served by the GET handler."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], dict[str, H]]] = []

    def add(self, template: str, handlers: dict[str, H]) -> None:
        """Register the handlers of one template, keyed by HTTP method."""
        self._routes.append((template, compile_template(template), handlers))

    def resolve(self, method: str, path: str) -> Match[H]:
        """The match for a request: no handler means 404 (unmatched template) or 405."""
        for template, pattern, handlers in self._routes:
            found = pattern.match(path)
            if found:
                handler = handlers.get("GET" if method == "HEAD" else method)
                return Match(template, handler, found.groupdict(), tuple(sorted(handlers)))
        return Match()

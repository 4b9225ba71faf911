# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is the colour to go back to serving its release? HAProxy's view of each server, and each server's ``/version``.

What counts is what applies to that colour alone: HAProxy's own health check (``/healthz/lb``: the process and
PostgreSQL) and the release each server answers on ``/version``. ``/readyz`` is never asked: it also fails for
shared dependencies (Stripe, Redis, SMTP) that are down for both colours alike, and refusing a flip back for those
would keep traffic on the release being rolled back for no gain.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import typing as t

from ansible_collections.payments.deploy.plugins.module_utils._haproxy import UP

VERSION_PATH = "/version"
MAX_THREADS = 32


def split_addr(addr: str) -> tuple[str, int]:
    """``127.0.0.1:28111`` or ``[::1]:28111`` (HAProxy's ``show stat`` addr) -> (host, port); ValueError otherwise."""
    host, sep, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"HAProxy gives no address:port for it ({addr!r})")
    return host, int(port)


def ask_version(addr: str, timeout: float) -> dict[str, t.Any]:
    """GET /version from one server: ``{"version", "colour"}`` or ``{"error"}``."""
    try:
        host, port = split_addr(addr)
    except ValueError as exc:
        return {"error": str(exc)}
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", VERSION_PATH, headers={"Accept": "application/json", "Connection": "close"})
        response = conn.getresponse()
        body = response.read(65536)
    except (OSError, http.client.HTTPException) as exc:
        return {"error": f"GET {VERSION_PATH} failed within {timeout:g}s: {exc or type(exc).__name__}"}
    finally:
        conn.close()
    if response.status != 200:
        return {"error": f"GET {VERSION_PATH} answered HTTP {response.status}"}
    try:
        answer = json.loads(body)
    except ValueError:
        return {"error": f"GET {VERSION_PATH} did not answer JSON"}
    if not isinstance(answer, dict) or not isinstance(answer.get("version"), str):
        return {"error": f"GET {VERSION_PATH} answered no version"}
    return {"version": answer["version"], "colour": answer.get("colour")}


def ask_versions(addrs: t.Mapping[str, str], timeout: float) -> dict[str, dict[str, t.Any]]:
    """``ask_version`` for every server at once (one thread each): the check takes one timeout at worst, not one per
    server."""
    if not addrs:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(addrs))) as pool:
        futures = {name: pool.submit(ask_version, addr, timeout) for name, addr in addrs.items()}
        return {name: future.result() for name, future in futures.items()}


def judge(rows: t.Mapping[str, t.Mapping[str, str]], answers: t.Mapping[str, t.Mapping[str, t.Any]], release: str,
          colour: str, shared_outage: bool = False) -> tuple[dict[str, dict[str, t.Any]], list[str]]:
    """Each server's report and the reasons the colour cannot take traffic back (none: it can).

    ``shared_outage``: no server of the live colour is UP either (PostgreSQL down, say). HAProxy's status then says
    nothing about this colour alone and is reported, not held against it; ``/version`` still must answer.
    """
    servers: dict[str, dict[str, t.Any]] = {}
    problems: list[str] = []
    if not rows:
        problems.append("the backend has no servers")
    for name, row in rows.items():
        answer = answers.get(name, {})
        status = row.get("status", "")
        report = {"status": status, "check_status": row.get("check_status") or None, "addr": row.get("addr") or None,
                  "version": answer.get("version"), "colour": answer.get("colour"), "error": answer.get("error")}
        where = f"{name} ({report['addr'] or 'no address'})"
        reasons = []
        if status != UP and not shared_outage:
            check = f", last check {report['check_status']}" if report["check_status"] else ""
            reasons.append(f"{where} is {status or 'of unknown status'} in HAProxy{check}")
        if report["error"]:
            reasons.append(f"{where}: {report['error']}")
        elif report["version"] != release:
            reasons.append(f"{where} runs release {report['version']}, not {release}")
        elif report["colour"] not in (None, colour):
            reasons.append(f"{where} says it is colour {report['colour']}, not {colour}")
        report["ok"] = not reasons
        servers[name] = report
        problems += reasons
    return servers, problems

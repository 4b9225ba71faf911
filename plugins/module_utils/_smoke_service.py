# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The payment service as one smoke-test target sees it: requests with the right key, every answer kept.

Private to the payments.deploy collection: the interface may change without notice.
"""

from __future__ import annotations

import secrets
import typing as t
from dataclasses import dataclass

from ansible_collections.payments.deploy.plugins.module_utils._smoke_http import (
    HttpClient,
    HttpFailure,
    HttpResponse,
    join_url,
)
from ansible_collections.payments.deploy.plugins.module_utils._smoke_options import Target
from ansible_collections.payments.deploy.plugins.module_utils._smoke_report import CheckFailed

# A bearer token no service issues: what an invalid key looks like.
INVALID = "invalid"


@dataclass(frozen=True)
class Credentials:
    """The service's keys by role; ``invalid`` is made up per run."""

    api: str | None
    admin: str | None
    smoke: str | None
    invalid: str = ""

    @classmethod
    def of(cls, api: str | None, admin: str | None, smoke: str | None) -> Credentials:
        return cls(api, admin, smoke, "smoke-invalid-" + secrets.token_hex(12))

    def token(self, role: str) -> str:
        value = {"api": self.api, "admin": self.admin, "smoke": self.smoke, INVALID: self.invalid}[role]
        if not value:
            raise CheckFailed(f"no {role} key was given")
        return value


class ServiceTarget:
    """Requests to one target's base URL; ``responses`` keeps every answer for the security header check."""

    def __init__(self, target: Target, http: HttpClient, credentials: Credentials) -> None:
        self.target = target
        self.name = target.name
        self.http = http
        self.credentials = credentials
        self.responses: list[HttpResponse] = []
        # After a request that got no answer even when retried, retries stop until the target answers again:
        # a target that is down fails each check at once instead of making every request wait through its retries.
        self.unreachable = False

    def call(self, method: str, path: str, role: str | None = "api", json_body: t.Any = None,
             headers: t.Mapping[str, str] | None = None, retry: bool = False) -> HttpResponse:
        """One request; ``role`` picks the bearer token (None: no Authorization header)."""
        send = dict(headers or {})
        if role is not None:
            send["Authorization"] = f"Bearer {self.credentials.token(role)}"
        try:
            response = self.http.request(method, join_url(self.target.url, path), send, json_body=json_body,
                                         retry=retry and not self.unreachable)
        except HttpFailure:
            self.unreachable = self.unreachable or retry
            raise
        self.unreachable = False
        self.responses.append(response)
        return response

    def get(self, path: str, role: str | None = "api") -> HttpResponse:
        """A GET changes nothing: retried after connection errors."""
        return self.call("GET", path, role, retry=True)


def expect_status(response: HttpResponse, *statuses: int, what: str = "") -> HttpResponse:
    """The response when its status is one of ``statuses``, else CheckFailed naming what was answered."""
    if response.status not in statuses:
        wanted = " or ".join(str(s) for s in statuses)
        what = what or f"{response.method} {response.path}"
        raise CheckFailed(f"{what} answered {response.describe()}, not {wanted}")
    return response


def error_shape_problem(response: HttpResponse) -> str | None:
    """Why an error answer is not ``{"error": {"type", "code", "message"}}``, or None."""
    error = response.error()
    missing = [field for field in ("type", "code", "message") if not isinstance((error or {}).get(field), str)]
    if missing:
        return f"the {response.status} body of {response.method} {response.path} lacks error.{', error.'.join(missing)}"
    return None

"""Admin endpoints: they require the admin role."""

from __future__ import annotations

from . import access
from .service import Service
from .web import Request, Response, json_response

COUNT_CUSTOMERS = "SELECT count(*) FROM customers"


def stats(service: Service, request: Request, params: dict[str, str]) -> Response:
    """GET /admin/stats: row counts of the stored resources."""
    access.require_admin(service, request)
    rows = service.database.fetch(COUNT_CUSTOMERS)
    return json_response(200, {"customers": rows[0][0]})

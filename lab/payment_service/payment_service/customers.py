"""Customers: an authenticated resource stored in PostgreSQL, read through a Redis cache."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from typing import Any

from . import access
from .service import Service
from .web import HTTPError, Request, Response, json_response

ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 14
MAX_EMAIL = 254
MAX_NAME = 200
FIELDS = frozenset({"email", "name"})
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

INSERT = ("INSERT INTO customers (id, email, email_hash, name) VALUES (%s, %s, %s, %s) "
          "RETURNING extract(epoch FROM created_at)::bigint")
SELECT = "SELECT id, email, name, extract(epoch FROM created_at)::bigint FROM customers WHERE id = %s"


def create(service: Service, request: Request, params: dict[str, str]) -> Response:
    """POST /v1/customers: validate, store with a salted email hash, answer 201."""
    access.require_api(service, request)
    email, name = validate(request.json())
    salt = service.settings.hash_salt
    if not salt:
        raise HTTPError(503, "not_configured", "HASH_SALT is not set: customers cannot be stored")
    customer_id = "cus_" + "".join(secrets.choice(ID_ALPHABET) for _position in range(ID_LENGTH))
    rows = service.database.fetch(INSERT, (customer_id, email, email_hash(email, salt), name), idempotent=False)
    customer = {"id": customer_id, "email": email, "name": name, "created": rows[0][0]}
    service.customers.put(customer)
    return json_response(201, customer)


def fetch(service: Service, request: Request, params: dict[str, str]) -> Response:
    """GET /v1/customers/{id}: 200 with the customer (from the cache, else the database) or 404."""
    access.require_api(service, request)
    if service.settings.test_slow_ms:
        time.sleep(service.settings.test_slow_ms / 1000)
    customer = service.customers.get(params["id"], lambda: _load(service, params["id"]))
    if customer is None:
        raise HTTPError(404, "customer_not_found", "no customer with this id")
    return json_response(200, customer)


def _load(service: Service, customer_id: str) -> dict[str, Any] | None:
    rows = service.database.fetch(SELECT, (customer_id,))
    if not rows:
        return None
    found_id, email, name, created = rows[0]
    return {"id": found_id, "email": email, "name": name, "created": created}


def validate(payload: Any) -> tuple[str, str]:
    """The email and name of a create request, or a 400 naming the first problem."""
    if not isinstance(payload, dict):
        raise HTTPError(400, "invalid_request", "body must be a JSON object")
    unknown = sorted(set(payload) - FIELDS)
    if unknown:
        raise HTTPError(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}")
    email, name = payload.get("email"), payload.get("name")
    if not isinstance(email, str) or len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email.strip()):
        raise HTTPError(400, "invalid_email", f"email must be a valid address of at most {MAX_EMAIL} characters")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise HTTPError(400, "invalid_name", f"name must be a non-empty string of at most {MAX_NAME} characters")
    return email.strip(), name.strip()


def email_hash(email: str, salt: str) -> str:
    """HMAC-SHA256 of the lower-cased email, keyed with HASH_SALT: a lookup key that hides the address."""
    return hmac.new(salt.encode("utf-8"), email.lower().encode("utf-8"), hashlib.sha256).hexdigest()

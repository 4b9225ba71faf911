"""What a handler knows about the request it serves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .store import Store


@dataclass
class Ctx:
    store: Store
    mode: str  # "test" or "live", from the API key's prefix
    request_id: str
    idempotency_key: str | None
    api_version: str
    route: str  # "POST /v1/payment_intents/{id}/confirm": names the endpoint in messages
    params: dict[str, Any]

    @property
    def livemode(self) -> bool:
        return self.mode == "live"

    @property
    def now(self) -> int:
        return self.store.now()

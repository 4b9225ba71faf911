"""The smoke_test unit tests' world: the fake service and Stripe, the keys, and the module's arguments for them."""

from __future__ import annotations

import typing as t

from smoke_fake_service import FakePaymentService, SmokeStripe
from stripe_module_runner import TEST_KEY

API_KEY = "svc-api-7d1e0c9b5a4f4e2b8c3d"
ADMIN_KEY = "svc-admin-0a9b8c7d6e5f4a3b2c1d"
SMOKE_KEY = "svc-smoke-5e4d3c2b1a0f9e8d7c6b"
SECRETS = (API_KEY, ADMIN_KEY, SMOKE_KEY, TEST_KEY)
ALLOWED_ORIGIN = "https://shop.example.com"
TARGETS = ("app1-green", "app2-green")


class World(t.NamedTuple):
    stripe: SmokeStripe
    service: FakePaymentService

    def close(self) -> None:
        self.service.close()
        self.stripe.close()


def make_world(*faults: str, payment_delay: float = 0.0) -> World:
    """A fake Stripe and a fake service with two listeners (two targets) and the given faults."""
    stripe = SmokeStripe(keys=[TEST_KEY])
    service = FakePaymentService(stripe, TEST_KEY, {"api": API_KEY, "admin": ADMIN_KEY, "smoke": SMOKE_KEY}, faults,
                                 payment_delay=payment_delay, cors_origins=(ALLOWED_ORIGIN,))
    return World(stripe, service)


def smoke_args(world: World, **extra: t.Any) -> dict[str, t.Any]:
    """Arguments that make a correct service pass every check; ``extra`` overrides them."""
    args = {
        "targets": [{"name": name, "url": url} for name, url in zip(TARGETS, world.service.urls)],
        "run_id": "unit-1", "api_key": API_KEY, "admin_key": ADMIN_KEY, "smoke_key": SMOKE_KEY,
        "stripe_api_key": TEST_KEY, "stripe_api_base": world.stripe.url, "payment_count": 4,
        "expected_version": "1.2.3",
        "cors_allowed_origin": ALLOWED_ORIGIN, "mailbox_url": world.service.mailbox_url, "rate_limit_attempts": 8,
        "wait_timeout": 0.5, "request_timeout": 5,
    }
    args.update(extra)
    return args

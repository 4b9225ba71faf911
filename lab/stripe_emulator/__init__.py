"""A stateful emulator of the parts of the Stripe API that the payments lab uses.

Run it with ``python -m stripe_emulator --host 127.0.0.1 --port N --keys-file F``; see
``docs/stripe-emulator.md`` for what it implements and what it does not.
"""

__version__ = "1.0.0"

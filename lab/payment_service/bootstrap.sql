-- Initial schema of the reference payment service. Idempotent: safe to apply more than once.
-- Applied once by the lab at start-up; the service itself never runs DDL.
CREATE TABLE IF NOT EXISTS customers (
    id          text        PRIMARY KEY,
    email       text        NOT NULL,
    email_hash  text        NOT NULL,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS customers_email_hash_idx ON customers (email_hash);

-- Payments, refunds and received Stripe events (the same definitions as migration 0002_payments_and_events).
CREATE TABLE IF NOT EXISTS payments (
    id                        text        PRIMARY KEY,
    stripe_payment_intent_id  text        UNIQUE NOT NULL,
    customer_id               text        NULL REFERENCES customers (id),
    amount                    bigint      NOT NULL CHECK (amount > 0),
    currency                  char(3)     NOT NULL,
    status                    text        NOT NULL,
    idempotency_key           text        UNIQUE NOT NULL,
    created_at                timestamptz DEFAULT now(),
    updated_at                timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS refunds (
    id                text        PRIMARY KEY,
    payment_id        text        REFERENCES payments (id),
    stripe_refund_id  text        UNIQUE NOT NULL,
    amount            bigint      NOT NULL,
    status            text        NOT NULL,
    created_at        timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS stripe_events (
    id            text        PRIMARY KEY,
    type          text        NOT NULL,
    livemode      boolean     NOT NULL,
    created       timestamptz NOT NULL,
    payload       jsonb       NOT NULL,
    received_at   timestamptz DEFAULT now(),
    processed_at  timestamptz NULL
);

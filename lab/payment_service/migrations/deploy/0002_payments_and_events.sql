-- Payments (one per Stripe PaymentIntent), their refunds, and every Stripe event the webhook received.
-- Amounts are in the currency's smallest unit (cents), as Stripe reports them.
-- IF NOT EXISTS: the lab's bootstrap.sql creates the same tables, and this change adopts them; the verify script
-- then checks that the existing tables have this shape.
CREATE TABLE IF NOT EXISTS payments (
    id                       text        PRIMARY KEY,              -- pay_...
    stripe_payment_intent_id text        UNIQUE NOT NULL,
    customer_id              text        NULL REFERENCES customers (id),
    amount                   bigint      NOT NULL CHECK (amount > 0),
    currency                 char(3)     NOT NULL,
    status                   text        NOT NULL,
    idempotency_key          text        UNIQUE NOT NULL,
    created_at               timestamptz DEFAULT now(),
    updated_at               timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS refunds (
    id               text        PRIMARY KEY,
    payment_id       text        REFERENCES payments (id),
    stripe_refund_id text        UNIQUE NOT NULL,
    amount           bigint      NOT NULL,
    status           text        NOT NULL,
    created_at       timestamptz DEFAULT now()
);

-- refunds are looked up by payment, and deleting a payment checks the foreign key through it
CREATE INDEX IF NOT EXISTS refunds_payment_id_idx ON refunds (payment_id);

CREATE TABLE IF NOT EXISTS stripe_events (
    id           text        PRIMARY KEY,                          -- the Stripe event id (evt_...)
    type         text        NOT NULL,
    livemode     boolean     NOT NULL,
    created      timestamptz NOT NULL,
    payload      jsonb       NOT NULL,
    received_at  timestamptz DEFAULT now(),
    processed_at timestamptz NULL
);

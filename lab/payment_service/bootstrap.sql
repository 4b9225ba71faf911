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

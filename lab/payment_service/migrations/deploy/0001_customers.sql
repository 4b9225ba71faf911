-- The customers table exactly as bootstrap.sql creates it. IF NOT EXISTS makes this a no-op on a database
-- where bootstrap.sql already ran; the verify script then checks that the existing table has this shape.
CREATE TABLE IF NOT EXISTS customers (
    id          text        PRIMARY KEY,
    email       text        NOT NULL,
    email_hash  text        NOT NULL,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS customers_email_hash_idx ON customers (email_hash);

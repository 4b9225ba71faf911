-- Nullable and without a default: a catalog-only change (no table rewrite), and release 1.0.0 ignores it.
ALTER TABLE payments ADD COLUMN description text;

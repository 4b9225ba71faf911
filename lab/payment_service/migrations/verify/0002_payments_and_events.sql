-- Fails unless payments, refunds and stripe_events have every column with the expected type and nullability.
DO $$
DECLARE
    expected CONSTANT integer := 22;
    found integer;
BEGIN
    SELECT count(*) INTO found
    FROM information_schema.columns
    WHERE table_schema = current_schema()
      AND (table_name, column_name, data_type, is_nullable) IN (
          ('payments', 'id', 'text', 'NO'),
          ('payments', 'stripe_payment_intent_id', 'text', 'NO'),
          ('payments', 'customer_id', 'text', 'YES'),
          ('payments', 'amount', 'bigint', 'NO'),
          ('payments', 'currency', 'character', 'NO'),
          ('payments', 'status', 'text', 'NO'),
          ('payments', 'idempotency_key', 'text', 'NO'),
          ('payments', 'created_at', 'timestamp with time zone', 'YES'),
          ('payments', 'updated_at', 'timestamp with time zone', 'YES'),
          ('refunds', 'id', 'text', 'NO'),
          ('refunds', 'payment_id', 'text', 'YES'),
          ('refunds', 'stripe_refund_id', 'text', 'NO'),
          ('refunds', 'amount', 'bigint', 'NO'),
          ('refunds', 'status', 'text', 'NO'),
          ('refunds', 'created_at', 'timestamp with time zone', 'YES'),
          ('stripe_events', 'id', 'text', 'NO'),
          ('stripe_events', 'type', 'text', 'NO'),
          ('stripe_events', 'livemode', 'boolean', 'NO'),
          ('stripe_events', 'created', 'timestamp with time zone', 'NO'),
          ('stripe_events', 'payload', 'jsonb', 'NO'),
          ('stripe_events', 'received_at', 'timestamp with time zone', 'YES'),
          ('stripe_events', 'processed_at', 'timestamp with time zone', 'YES'));
    IF found <> expected THEN
        RAISE EXCEPTION '0002_payments_and_events is not in place: % of % expected columns of payments, refunds, stripe_events found',
            found, expected;
    END IF;
    IF to_regclass('refunds_payment_id_idx') IS NULL THEN
        RAISE EXCEPTION '0002_payments_and_events is not in place: index refunds_payment_id_idx is missing';
    END IF;
END
$$;

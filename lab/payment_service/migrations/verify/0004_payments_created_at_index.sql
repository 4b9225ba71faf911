-- A failed CONCURRENTLY build leaves an INVALID index behind: require a valid, ready one.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_index i
                   WHERE i.indexrelid = to_regclass('payments_created_at_idx')
                     AND i.indrelid = to_regclass('payments') AND i.indisvalid AND i.indisready) THEN
        RAISE EXCEPTION '0004_payments_created_at_index is not in place: no valid index payments_created_at_idx on payments';
    END IF;
END
$$;

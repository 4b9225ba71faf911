DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'payments'
                     AND column_name = 'description' AND data_type = 'text' AND is_nullable = 'YES') THEN
        RAISE EXCEPTION '0003_payments_description is not in place: payments.description (text, nullable) is missing';
    END IF;
END
$$;

-- Fails unless customers has every column with the expected type and nullability, and its email_hash index.
DO $$
DECLARE
    found integer;
BEGIN
    SELECT count(*) INTO found
    FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'customers'
      AND (column_name, data_type, is_nullable) IN (
          ('id', 'text', 'NO'), ('email', 'text', 'NO'), ('email_hash', 'text', 'NO'), ('name', 'text', 'NO'),
          ('created_at', 'timestamp with time zone', 'NO'));
    IF found <> 5 THEN
        RAISE EXCEPTION '0001_customers is not in place: table customers is missing or lacks expected columns (% of 5 found)', found;
    END IF;
    IF to_regclass('customers_email_hash_idx') IS NULL THEN
        RAISE EXCEPTION '0001_customers is not in place: index customers_email_hash_idx is missing';
    END IF;
END
$$;

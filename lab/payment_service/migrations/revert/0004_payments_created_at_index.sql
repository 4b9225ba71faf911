-- Also cleans up after a failed build (an INVALID index or none at all), hence IF EXISTS.
DROP INDEX CONCURRENTLY IF EXISTS payments_created_at_idx;

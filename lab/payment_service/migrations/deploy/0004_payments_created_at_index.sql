-- Built without blocking writes to payments; CONCURRENTLY cannot run in a transaction (transactional: false).
CREATE INDEX CONCURRENTLY payments_created_at_idx ON payments (created_at);

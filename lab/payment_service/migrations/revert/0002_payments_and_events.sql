DROP TABLE refunds;
DROP TABLE payments;
DROP TABLE stripe_events;

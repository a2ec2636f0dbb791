-- The audit log is pruned by age (`[audit] retention_days`): without an index each pruning pass
-- would scan the whole log.
CREATE INDEX audit_log_by_time ON audit_log (at_ms);

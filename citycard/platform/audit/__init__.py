"""The append-only, hash-chained audit log (审计日志), one chain per schema."""

"""Watching the model in service: drift of the acquisition statistics between pipeline runs, and skew and drift of
served requests (read from the server's request logs) against the served model's training data (docs/monitoring.md)."""

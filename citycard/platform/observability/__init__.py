"""Operability: structured logs (logs.py, requests.py, tasks.py), Prometheus metrics (metrics.py) and the
optional Sentry reporting (sentry.py). docs/operations.md, "Logs" and "Metrics".

Nothing here logs or exports a request's body, its query string or anything about a person: requests are
named by method, path, status and the id of who made them (user, API key or terminal), never by name."""

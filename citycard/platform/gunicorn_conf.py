"""gunicorn's settings for the web process: the demo (``citycard demo``), the image (infra/Dockerfile) and
benchmarks/http_ingest.py all start gunicorn with ``-c python:citycard.platform.gunicorn_conf``.

Threads in a few processes (``gthread``), with keep-alive: a terminal (or a load balancer) may keep its
connection open between batches, and a slow upload holds one thread, not a whole process. Two processes per
core with two threads each: a kept-alive connection stays with the process that accepted it, so more,
smaller processes spread a few busy connections over both cores (2 processes × 4 threads left a core idle),
and a thread runs Python while another waits for PostgreSQL. Measured on 2 cores with the clients on the same
machine (docs/benchmarks.md, "Ingestion over HTTP"): within 13% of two sync workers, which neither keep a
connection nor survive a slow client without a buffering proxy in front. ``WEB_CONCURRENCY`` sets another
process count (gunicorn's own variable); ``GUNICORN_CMD_ARGS`` or options on the command line override any
of these. No access log: it would print query strings; the request log line instead (docs/operations.md,
"Logs").
"""

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = 2
keepalive = (
    30  # seconds an idle connection stays open (gunicorn's default, 2, drops a terminal's between batches)
)

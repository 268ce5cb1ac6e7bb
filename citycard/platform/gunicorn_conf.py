"""gunicorn's settings for the web process: the demo (``citycard demo``), the image (infra/Dockerfile) and
benchmarks/http_ingest.py all start gunicorn with ``-c python:citycard.platform.gunicorn_conf``.

Threads in a few processes (``gthread``), with keep-alive: a terminal (or a load balancer) keeps its
connection open between batches, and while one thread of a worker waits for PostgreSQL (a batch's COPY
and commit take about as long as its Python work) another runs. Measured on 2 cores with the clients on
the same machine (docs/benchmarks.md, "Ingestion over HTTP"). One worker per core: ``WEB_CONCURRENCY``
sets another count (gunicorn's own variable), ``GUNICORN_CMD_ARGS`` or options on the command line
override any of these. No access log: it would print query strings; the request log line instead
(docs/operations.md, "Logs").
"""

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = 4
keepalive = (
    30  # seconds an idle connection stays open (gunicorn's default, 2, drops a terminal's between batches)
)

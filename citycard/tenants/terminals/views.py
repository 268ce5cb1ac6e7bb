"""The upload endpoint on a tenant's domain: ``POST /terminal/v1/batches`` (docs/ingestion.md).

Every answer is JSON: the signed acknowledgement, or ``{"error": {"code", "message"}}``; what Django or
the tenant routing answer on this route, and failures, are put in that form by
``citycard.platform.terminal_answers``."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.http.request import UnreadablePostError
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from citycard.platform.observability import metrics
from citycard.platform.observability.requests import request_note
from citycard.platform.terminal_answers import json_error
from citycard.tenants.terminals.ingest import BatchRefused, batch_ingest

log = logging.getLogger(__name__)


@login_not_required  # no session: every batch is verified against its terminal's Ed25519 key (ingest/signature.py)
@csrf_exempt
@require_POST
def batch_upload(request: HttpRequest) -> HttpResponse:
    """Take a terminal's signed batch; answer with the tenant-signed acknowledgement."""
    content_type = request.content_type or ""
    if content_type != "application/json":
        return json_error(415, "unsupported_media_type", "send the batch as Content-Type: application/json")
    start = time.perf_counter()
    outcome = "failed"  # an exception: terminal_answers answers it (503 unavailable or 500 internal)
    try:
        result = batch_ingest(tenant=request.tenant, body=_body(request))
        outcome = "replayed" if result.replayed else "stored"
    except BatchRefused as exc:
        outcome = exc.code
        log.warning("batch refused on %s: %s (%s)", request.tenant.code, exc.message, exc.code)
        return json_error(exc.status, exc.code, exc.message)
    finally:
        metrics.upload_observe(outcome=outcome, seconds=time.perf_counter() - start)
    request_note(request, outcome=outcome, terminal=result.terminal_id)
    if not result.replayed:
        metrics.taps_count(
            accepted=result.accepted,
            duplicates=result.duplicates,
            rejected=result.rejected_by_reason,
            conflicts=result.conflicts,
        )
    return HttpResponse(result.body, status=200, content_type="application/json")


def _body(request: HttpRequest) -> bytes:
    """The body, read from the request's stream up to the batch limit (``request.body`` would apply
    DATA_UPLOAD_MAX_MEMORY_SIZE, Django's 2.5 MiB for every route, and answer an HTML 400 above it)."""
    limit = settings.TERMINAL_BATCH_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:  # not read: terminal_answers drops what was sent before the answer goes
        raise BatchRefused(
            f"the batch is {declared} bytes; the limit is {limit}", code="too_large", status=413
        )
    try:
        body = request.read(limit + 1)
    except UnreadablePostError:
        raise BatchRefused(
            "the body ended before its Content-Length (connection lost?)", code="malformed"
        ) from None
    if len(body) > limit:
        raise BatchRefused(f"the batch is over {limit} bytes, the limit", code="too_large", status=413)
    if len(body) < declared:
        raise BatchRefused(
            f"the body ended after {len(body)} of the {declared} bytes its Content-Length declares",
            code="malformed",
        )
    return body

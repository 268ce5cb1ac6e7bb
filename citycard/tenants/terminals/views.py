"""The upload endpoint on a tenant's domain: ``POST /terminal/v1/batches`` (docs/ingestion.md)."""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from citycard.tenants.terminals.ingest import BatchRefused, batch_ingest

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(
        {"error": {"code": code, "message": message}},
        status=status,
        json_dumps_params={"ensure_ascii": False},
    )


@login_not_required  # no session: every batch is verified against its terminal's Ed25519 key (ingest.py)
@csrf_exempt
@require_POST
def batch_upload(request):
    """Take a terminal's signed batch; answer with the tenant-signed acknowledgement."""
    content_type = request.content_type or ""
    if content_type != "application/json":
        return _error(415, "unsupported_media_type", "send the batch as Content-Type: application/json")
    try:
        result = batch_ingest(tenant=request.tenant, body=request.body)
    except BatchRefused as exc:
        log.warning("batch refused on %s: %s (%s)", request.tenant.code, exc.message, exc.code)
        return _error(exc.status, exc.code, exc.message)
    return HttpResponse(result.body, status=200, content_type="application/json")

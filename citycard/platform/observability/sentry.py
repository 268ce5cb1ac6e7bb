"""Errors to Sentry, only when ``SENTRY_DSN`` is set and sentry-sdk is installed (``pip install
'citycard-interop[sentry]'``). Nothing about a person is sent: no default PII (user, address, cookies), no
request bodies, no local variables of the stack frames, and every URL without its query string."""

from __future__ import annotations

import importlib
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)


def _bare(url: Any) -> Any:
    if not isinstance(url, str) or ("?" not in url and "#" not in url):
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def scrub(event: dict, hint: Any = None) -> dict:
    """``before_send`` (and ``before_send_transaction``): the event without query strings or bodies."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("query_string", None)
        request.pop("data", None)
        request.pop("cookies", None)
        if "url" in request:
            request["url"] = _bare(request["url"])
    for crumb in (event.get("breadcrumbs") or {}).get("values", []) or []:
        data = crumb.get("data") if isinstance(crumb, dict) else None
        if isinstance(data, dict):
            data.pop("http.query", None)
            if "url" in data:
                data["url"] = _bare(data["url"])
    for span in event.get("spans") or []:
        data = span.get("data") if isinstance(span, dict) else None
        if isinstance(data, dict):
            data.pop("http.query", None)
            if "url" in data:
                data["url"] = _bare(data["url"])
    return event


def scrub_breadcrumb(crumb: dict, hint: Any = None) -> dict:
    data = crumb.get("data")
    if isinstance(data, dict):
        data.pop("http.query", None)
        if "url" in data:
            data["url"] = _bare(data["url"])
    return crumb


def sentry_init(*, dsn: str, traces_sample_rate: float = 0.0) -> bool:
    """Start reporting to ``dsn`` (environment and release from ``SENTRY_ENVIRONMENT``/``SENTRY_RELEASE``,
    which sentry-sdk reads itself); False, with a warning, when sentry-sdk is not installed."""
    if not dsn:
        return False
    try:
        sentry_sdk = importlib.import_module("sentry_sdk")
    except ImportError:
        log.warning(
            "SENTRY_DSN is set but sentry-sdk is not installed: pip install 'citycard-interop[sentry]'"
        )
        return False
    sentry_sdk.init(
        dsn=dsn,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=traces_sample_rate,
        before_send=scrub,
        before_send_transaction=scrub,
        before_breadcrumb=scrub_breadcrumb,
    )
    return True

"""The two endpoints: who may call each and how they authenticate.

- Tenant endpoint (``/graphql/`` on ``<code>.<base domain>``): partner apps, with
  ``Authorization: Bearer cck_<key_id>_<secret>``. The key must belong to the tenant of the domain, be
  unexpired and unrevoked; its scopes are the principal's. Cookies are ignored (no CSRF exposure).
- Platform endpoint (``/graphql/`` on the base domain): platform users (clearing staff, platform
  operators) signed in with the platform admin's session; their role gives their scopes
  (citycard/platform/scopes.py). Django's CSRF check applies to the session (GraphiQL sends the token).
  Or a platform API key (issued for the platform, ``citycard apikey --tenant public issue``) for clearing
  staff's tools, with ``Authorization: Bearer``: its platform scopes, no session, no CSRF token. A partner
  app's key is refused here (``WRONG_TENANT``).

A key refused (malformed, unknown, wrong secret, revoked, expired, another tenant's) counts against the
client's address; past ``GRAPHQL_AUTH_FAILURES`` in a window, that address's keys are answered
``RATE_LIMITED`` (429) without being checked until the window ends.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie

from citycard.graphql.api import PLATFORM_COST_MAP, TENANT_COST_MAP, platform_schema, tenant_schema
from citycard.graphql.core.context import Principal
from citycard.graphql.core.errors import ApiErrorCode
from citycard.graphql.core.throttle import FAILED_AUTHENTICATION, AuthGuard
from citycard.graphql.core.views import GraphQLAPIView, Refusal
from citycard.platform import selectors, services
from citycard.platform.models import PLATFORM_ROLES, ApiKey
from citycard.platform.scopes import platform_scopes_of


def _bearer(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise Refusal(
            401,
            "send the partner app's API key as 'Authorization: Bearer <key>'",
            ApiErrorCode.UNAUTHENTICATED,
            headers={"WWW-Authenticate": 'Bearer realm="citycard"'},
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal(401, "the Authorization header is not 'Bearer <key>'", ApiErrorCode.INVALID_TOKEN)
    return token.strip()


def _api_key(request: HttpRequest, tenant) -> ApiKey:
    """The request's API key, valid for ``tenant`` (a city or county, or the platform itself), or Refusal.

    Each refusal of a key sent counts against the client's address; once the address has used up
    ``GRAPHQL_AUTH_FAILURES``, its keys are refused with RATE_LIMITED before they are checked
    (core/throttle.py), right or wrong alike."""
    now = timezone.now()
    guard = AuthGuard.of(request, now=now)
    try:
        return _api_key_checked(request, tenant, guard=guard, now=now)
    except Refusal as refusal:
        if refusal.code in FAILED_AUTHENTICATION:
            guard.failed()
        raise


def _throttled(guard: AuthGuard) -> Refusal:
    message, retry = guard.message()
    return Refusal(
        429,
        message,
        ApiErrorCode.RATE_LIMITED,
        headers={"Retry-After": str(retry)},
        resetAt=guard.reset_at.isoformat(),
    )


def _api_key_checked(request: HttpRequest, tenant, *, guard: AuthGuard, now) -> ApiKey:
    try:
        token = _bearer(request)
    except Refusal as refusal:
        if refusal.code in FAILED_AUTHENTICATION and guard.exhausted():
            raise _throttled(guard) from None
        raise
    invalid = Refusal(401, "the API key is not valid", ApiErrorCode.INVALID_TOKEN)
    key_id = services.api_key_parse(token)
    key, failures = (
        selectors.api_key_with_rate_count(key_id, bucket=guard.bucket, window_s=guard.window_s, now=now)
        if key_id is not None
        else (None, None)
    )
    if guard.exhausted(failures):
        raise _throttled(guard)
    if key is None or not hmac.compare_digest(key.token_sha256, services.api_key_hash(token)):
        raise invalid
    if key.tenant_id != tenant.pk:
        where = "the platform's domain" if tenant.is_platform else f"{tenant.code}'s domain"
        hint = "; a partner app's key is valid only on its tenant's domain" if tenant.is_platform else ""
        raise Refusal(401, f"this API key is not valid on {where}{hint}", ApiErrorCode.WRONG_TENANT)
    if key.revoked_at is not None:
        raise Refusal(401, f"API key {key.key_id} was revoked", ApiErrorCode.TOKEN_REVOKED)
    if key.is_expired(now):
        raise Refusal(
            401,
            f"API key {key.key_id} expired on {key.expires_at.isoformat()}",
            ApiErrorCode.TOKEN_EXPIRED,
        )
    services.api_key_touch(key=key, now=now)
    return key


@method_decorator(csrf_exempt, name="dispatch")
class TenantGraphQLView(GraphQLAPIView):
    schema = tenant_schema
    cost_map = TENANT_COST_MAP
    endpoint = "tenant"

    def authenticate(self, request: HttpRequest) -> Principal:
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.is_platform:
            raise Refusal(
                404, "partner apps call /graphql/ on their tenant's domain", ApiErrorCode.BAD_REQUEST
            )
        key = _api_key(request, tenant)
        return Principal(
            actor=f"apikey:{key.key_id}", scopes=frozenset(key.scopes), tenant=tenant, api_key=key
        )


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


def _csrf_failure(request: HttpRequest) -> str | None:
    """Django's CSRF check, as its middleware makes it (None: passed). The platform view is exempt from the
    middleware so that a tool's API key needs no CSRF token; a browser's session still does."""
    check = _CsrfCheck(lambda req: None)  # type: ignore[arg-type, return-value]
    check.process_request(request)
    return check.process_view(request, None, (), {})  # type: ignore[arg-type, return-value]


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(ensure_csrf_cookie, name="get")
class PlatformGraphQLView(GraphQLAPIView):
    schema = platform_schema
    cost_map = PLATFORM_COST_MAP
    endpoint = "platform"

    def authenticate(self, request: HttpRequest) -> Principal:
        tenant = getattr(request, "tenant", None)
        if tenant is None or not tenant.is_platform:
            raise Refusal(404, "the platform endpoint answers on the base domain", ApiErrorCode.BAD_REQUEST)
        if request.headers.get("Authorization"):
            # A platform API key (clearing staff's tools): its own platform scopes, no session, no CSRF.
            key = _api_key(request, tenant)
            return Principal(actor=f"apikey:{key.key_id}", scopes=frozenset(key.scopes), api_key=key)
        user = request.user
        if not user.is_authenticated:
            raise Refusal(
                401,
                "sign in to the platform (/admin/) as clearing staff or operator, or send a platform API key",
                ApiErrorCode.UNAUTHENTICATED,
            )
        failure = _csrf_failure(request)
        if failure:
            raise Refusal(403, f"CSRF verification failed: {failure}", ApiErrorCode.PERMISSION_DENIED)
        if not user.is_active or user.role not in PLATFORM_ROLES or user.tenant_id is not None:
            raise Refusal(403, "only platform users may use this endpoint", ApiErrorCode.PERMISSION_DENIED)
        return Principal(actor=f"user:{user.username}", scopes=platform_scopes_of(user.role), user=user)

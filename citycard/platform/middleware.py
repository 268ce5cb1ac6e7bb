"""Tenant routing by host name, refusing suspended tenants; and access to every view by site membership."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import split_domain_port
from django.utils import translation
from django.utils.translation import gettext as _
from django_tenants.middleware.main import TenantMainMiddleware
from django_tenants.utils import remove_www

from citycard.platform.access import site_refusal

# Liveness and readiness carry no data and must answer without the database (liveness) or before it is
# known to be up (readiness): they are routed without looking the host up among the tenants' domains.
# So is /metrics, which scrapers call by the process's address on every host (access: its own view).
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
UNROUTED_PATHS = HEALTH_PATHS | {"/metrics"}


class TenantMiddleware(TenantMainMiddleware):
    """django-tenants' routing (``<code>.<base domain>`` runs in that tenant's schema), plus status."""

    @staticmethod
    def hostname_from_request(request: HttpRequest) -> str:
        # Host names are case-insensitive and may end with the root's dot or carry a port:
        # HANGZHOU.localhost., hangzhou.localhost:8000 and hangzhou.localhost are one site.
        # (get_host() has already checked ALLOWED_HOSTS; split_domain_port lower-cases and drops both.)
        domain, _port = split_domain_port(request.get_host())
        return remove_www(domain)

    def process_request(self, request):
        if request.path_info in UNROUTED_PATHS:
            request.tenant = None
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
            return None
        response = super().process_request(request)
        if response is not None:
            return response
        tenant = request.tenant
        if not tenant.is_platform and not tenant.is_active:
            with _language_of(request):
                text = _("%(name)s (%(code)s) is suspended on this platform: %(reason)s") % {
                    "name": tenant.name_en,
                    "code": tenant.code,
                    "reason": tenant.status_reason,
                }
            return HttpResponse(f"{text}\n", status=403, content_type="text/plain; charset=utf-8")
        return None

    def no_tenant_found(self, request, hostname):
        with _language_of(request):
            text = _("No citizen-card tenant answers on %(host)s.") % {"host": hostname}
        return HttpResponse(f"{text}\n", status=404, content_type="text/plain; charset=utf-8")


def _language_of(request: HttpRequest):
    """The request's language (Accept-Language, the switch's cookie), chosen before LocaleMiddleware runs:
    the routing answers first."""
    return translation.override(translation.get_language_from_request(request))


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path_info.endswith(".json") or ("json" in accept and "html" not in accept)


class SiteAccessMiddleware(LoginRequiredMiddleware):
    """Nothing anonymous by default: every view needs a signed-in user who belongs to this host's site
    (access.site_refusal), unless it is marked ``login_not_required``: health checks, the admin's sign-in
    page, and endpoints that authenticate their caller themselves (terminal signatures, API keys).

    A page sends the browser to the sign-in form; a JSON endpoint answers 401 (nobody signed in) or 403
    (signed in, but not on this site) with the reason. A session of another site counts for nothing here:
    the session table is shared, so a copied cookie must not open another tenant's pages."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not getattr(view_func, "login_required", True):
            return None
        refusal = site_refusal(user=request.user, tenant=getattr(request, "tenant", None))
        if refusal is None:
            return None
        if _wants_json(request):
            signed_in = request.user.is_authenticated
            return JsonResponse(
                {"error": {"code": "wrong_site" if signed_in else "unauthenticated", "message": refusal}},
                status=403 if signed_in else 401,
            )
        return self.handle_no_permission(request, view_func)

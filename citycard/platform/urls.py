"""URLs on a tenant's domain (``<code>.<base domain>``), run in that tenant's schema.

Every view needs a signed-in user of this tenant's site (middleware.SiteAccessMiddleware) unless marked
``login_not_required``: the health checks, the published verification keys (public keys only), the
admin's sign-in page, the terminal endpoints (a terminal's Ed25519 signature) and GraphQL (a partner
app's API key). tests/platform/test_web_probe.py
holds the list and requests every URL here anonymously and as every role of another site.
"""

from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.i18n import set_language

from citycard.graphql.views import TenantGraphQLView
from citycard.interop.entitlement_views import entitlement_check
from citycard.platform import views
from citycard.platform.admin_sites import tenant_admin

urlpatterns = [
    path("", views.tenant_home, name="home"),
    path("status.json", views.status, name="status"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path(".well-known/citycard-keys.json", views.citycard_keys, name="citycard-keys"),
    # The language switch (中文 / English): sets the language cookie and goes back; open to the sign-in page.
    path("i18n/setlang/", login_not_required(set_language), name="set_language"),
    path("admin/", tenant_admin.urls),
    # The city dashboard: the site's own users (city administrator; county officers on their own site).
    path("dashboard/", include("citycard.tenants.dashboard.urls")),
    path("merchants/", include("citycard.tenants.merchants.urls")),
    # The partner apps' endpoint authenticates every request by its API key (graphql/views.py).
    # Payment channels: the providers' notify endpoints (signed by each provider) and the clerk's reconciliation.
    path("payments/", include("citycard.tenants.payments.urls")),
    path("graphql/", login_not_required(TenantGraphQLView.as_view()), name="graphql"),
    path("", include("citycard.tenants.terminals.urls")),
    path("", include("citycard.tenants.exchange.urls")),
    path("", include("citycard.tenants.entitlements.urls")),
    # A terminal's signed online entitlement check (its own tenant's cardholders and visitors alike).
    path("terminal/v1/entitlement-check", entitlement_check, name="terminal-entitlement-check"),
]

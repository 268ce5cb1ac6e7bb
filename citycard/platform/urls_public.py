"""URLs on the platform's bare base domain (public schema). Mounts the platform-side parts of the
other packages as they are built; this and urls.py are the only platform modules that may import them.

Every view needs a signed-in platform user (middleware.SiteAccessMiddleware) unless marked
``login_not_required``: the health checks, the metrics (platform staff or an allowed address, checked by
the view), the published verification keys (public keys only), the admin's sign-in page and GraphQL (which
authenticates a platform user's session or a platform API key itself). tests/platform/test_web_probe.py
holds the list and requests every URL here anonymously and as every role of another site.
"""

from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.i18n import set_language

from citycard.graphql.views import PlatformGraphQLView
from citycard.platform import views
from citycard.platform.admin_sites import platform_admin

urlpatterns = [
    path("", views.platform_home, name="home"),
    path("status.json", views.status, name="status"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path(".well-known/citycard-keys.json", views.citycard_keys, name="citycard-keys"),
    # Routed here from every host (middleware.UNROUTED_PATHS); platform staff or an allowed address.
    path("metrics", views.metrics, name="metrics"),
    # The language switch (中文 / English): sets the language cookie and goes back; open to the sign-in page.
    path("i18n/setlang/", login_not_required(set_language), name="set_language"),
    path("admin/", platform_admin.urls),
    # The clearing console: clearing staff and operators (operators read only), docs/console.md.
    path("console/", include("citycard.interop.console.urls")),
    # Authenticates itself: a platform user's session (with its CSRF check) or a platform API key.
    path("graphql/", login_not_required(PlatformGraphQLView.as_view()), name="graphql"),
]

"""URLs on the platform's bare base domain (public schema). Mounts the platform-side parts of the
other packages as they are built; this and urls.py are the only platform modules that may import them."""

from django.urls import path

from citycard.graphql.views import PlatformGraphQLView
from citycard.platform import views
from citycard.platform.admin_sites import platform_admin

urlpatterns = [
    path("", views.platform_home, name="home"),
    path("status.json", views.status, name="status"),
    path("admin/", platform_admin.urls),
    path("graphql/", PlatformGraphQLView.as_view(), name="graphql"),
]

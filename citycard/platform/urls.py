"""URLs on a tenant's domain (``<code>.<base domain>``), run in that tenant's schema."""

from django.urls import include, path

from citycard.platform import views
from citycard.platform.admin_sites import tenant_admin

urlpatterns = [
    path("", views.tenant_home, name="home"),
    path("status.json", views.status, name="status"),
    path("admin/", tenant_admin.urls),
    path("", include("citycard.tenants.terminals.urls")),
    path("", include("citycard.tenants.cards.urls")),
]

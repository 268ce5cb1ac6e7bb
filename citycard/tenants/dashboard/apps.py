from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DashboardConfig(AppConfig):
    """No models: pages over the other tenant apps' data, in the tenant's own schema."""

    name = "citycard.tenants.dashboard"
    label = "dashboard"
    verbose_name = _("City dashboard")

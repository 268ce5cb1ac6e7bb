from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """No models: pages over the other tenant apps' data, in the tenant's own schema."""

    name = "citycard.tenants.dashboard"
    label = "dashboard"
    verbose_name = "City dashboard"

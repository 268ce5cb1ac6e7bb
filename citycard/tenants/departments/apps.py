from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DepartmentsConfig(AppConfig):
    """Departments, service points (窗口), data grants with their read log, county onboarding."""

    name = "citycard.tenants.departments"
    label = "departments"
    verbose_name = _("Departments and service points")

    role_permissions = {
        "city_admin": {
            "departments.department": {"view", "add", "change"},
            "departments.servicepoint": {"view", "add", "change"},
            "departments.datagrant": {"view", "add", "change"},
            "departments.dataread": {"view"},
            "departments.onboarding": {"view"},
        },
        # A county office onboards its own departments and service points in its own schema.
        "county_officer": {
            "departments.department": {"view", "add", "change"},
            "departments.servicepoint": {"view", "add", "change"},
            "departments.datagrant": {"view"},
            "departments.dataread": {"view"},
            "departments.onboarding": {"view"},
        },
    }

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
        "department_officer": {
            "departments.department": {"view"},
            "departments.servicepoint": {"view"},
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

    def ready(self) -> None:
        # Departments' grant reads join the cardholder's access log kept by cards, the app below this one
        # (an in-function import: models may not be imported before the app registry is ready).
        from citycard.tenants.cards import selectors as cards_selectors
        from citycard.tenants.departments.selectors import grant_reads

        if grant_reads not in cards_selectors.ACCESS_LOG_SOURCES:
            cards_selectors.ACCESS_LOG_SOURCES.append(grant_reads)

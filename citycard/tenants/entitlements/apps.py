from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EntitlementsConfig(AppConfig):
    """Entitlements (权益) departments load onto cards, and their acceptance at service points."""

    name = "citycard.tenants.entitlements"
    label = "entitlements"
    verbose_name = _("Entitlements")

    role_permissions = {
        "city_admin": {
            "entitlements.entitlementtype": {"view", "add", "change"},
            "entitlements.entitlement": {"view", "add", "change"},
            "entitlements.entitlementuse": {"view"},
            "entitlements.visitoruse": {"view"},
        },
        # A department's officer defines its own department's types and grants them; it never approves.
        "department_officer": {
            "entitlements.entitlementtype": {"view", "add"},
            "entitlements.entitlement": {"view", "add", "change"},
            "entitlements.entitlementuse": {"view"},
        },
        "county_officer": {
            "entitlements.entitlementtype": {"view", "add", "change"},
            "entitlements.entitlement": {"view"},
            "entitlements.entitlementuse": {"view"},
            "entitlements.visitoruse": {"view"},
        },
    }

    def ready(self) -> None:
        # Automatic grants follow the cards app's signals: cards never imports entitlements.
        from citycard.tenants.entitlements import receivers  # noqa: F401

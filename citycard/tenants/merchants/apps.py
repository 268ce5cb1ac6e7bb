from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MerchantsConfig(AppConfig):
    """Merchants (特约商户): onboarding, their terminals, acceptance and refunds, daily settlement (结算)."""

    name = "citycard.tenants.merchants"
    label = "merchants"
    verbose_name = _("Merchants")

    role_permissions = {
        "city_admin": {
            "merchants.merchant": {"view", "add", "change"},
            "merchants.merchantterminal": {"view"},
            "merchants.payment": {"view"},
            "merchants.refund": {"view"},
            "merchants.settlement": {"view"},
        },
        "county_officer": {
            "merchants.merchant": {"view", "add", "change"},
            "merchants.merchantterminal": {"view"},
            "merchants.payment": {"view"},
            "merchants.refund": {"view"},
            "merchants.settlement": {"view"},
        },
    }

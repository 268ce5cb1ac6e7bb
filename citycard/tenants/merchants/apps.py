from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MerchantsConfig(AppConfig):
    """Merchants (特约商户): onboarding, their terminals, acceptance and refunds, daily settlement (结算)."""

    name = "citycard.tenants.merchants"
    label = "merchants"
    verbose_name = _("Merchants")

    demo_step = "citycard.tenants.merchants.demo.demo_step"
    demo_order = 70  # after the terminals' step (the POS shares its demo keys and queues)

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

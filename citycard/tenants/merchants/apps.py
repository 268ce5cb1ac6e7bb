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
        # A department's officer onboards and manages its own department's merchants (a school's canteen),
        # never another department's (merchants.services.merchant_manage_refusal); settlements and the
        # payout file stay with the administration.
        "department_officer": {
            "merchants.merchant": {"view", "add", "change"},
            "merchants.merchantterminal": {"view"},
            "merchants.payment": {"view"},
            "merchants.refund": {"view"},
        },
        "county_officer": {
            "merchants.merchant": {"view", "add", "change"},
            "merchants.merchantterminal": {"view"},
            "merchants.payment": {"view"},
            "merchants.refund": {"view"},
            "merchants.settlement": {"view"},
        },
    }

    def ready(self) -> None:
        # The issuer's books for its cards spent at other cities' merchants: exchange, below merchants,
        # is handed the booking (imported here: models load only once the app registry is ready).
        from citycard.tenants.exchange import services as exchange
        from citycard.tenants.merchants.services import merchant_roaming_spent_book

        if exchange.ISSUER_SPEND_SINK is None:
            exchange.ISSUER_SPEND_SINK = merchant_roaming_spent_book
        # the acquirer's side of the payments an issuer rejected: reversed from its reconciliation file
        from citycard.tenants.merchants.services import merchant_roaming_rejections_book

        if exchange.CYCLE_REJECTIONS_SINK is None:
            exchange.CYCLE_REJECTIONS_SINK = merchant_roaming_rejections_book

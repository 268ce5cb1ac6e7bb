from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    """The online account on a double-entry ledger, the e-purse shadow, subsidies (市民卡账户、补贴)."""

    name = "citycard.tenants.accounts"
    label = "accounts"
    verbose_name = _("Accounts and subsidies")

    role_permissions = {
        "city_admin": {
            "accounts.ledgeraccount": {"view"},
            "accounts.posting": {"view"},
            "accounts.leg": {"view"},
            "accounts.purseshadow": {"view"},
            "accounts.subsidyprogramme": {"view", "add", "change"},
            "accounts.subsidyrun": {"view"},
            "accounts.subsidypayment": {"view"},
            "accounts.subsidyitem": {"view"},
        },
    }

    def ready(self) -> None:
        # A replaced card's money follows it: cards, below accounts, only sends the signal (imported here:
        # models load only once the app registry is ready).
        from citycard.tenants.accounts.services import card_replaced_follow
        from citycard.tenants.cards.signals import card_replaced

        card_replaced.connect(card_replaced_follow, dispatch_uid="accounts.card_replaced_follow")

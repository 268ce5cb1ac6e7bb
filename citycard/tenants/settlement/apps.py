from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SettlementConfig(AppConfig):
    """The settlement of cleared cycles on the tenant's ledger (清算资金结算入账): the interop accounts moved to
    the settlement bank account from the reconciliation file each cycle's settlement delivers, and the
    differences between the file and the ledger for a clerk."""

    name = "citycard.tenants.settlement"
    label = "settlement"
    verbose_name = _("Interop settlement")

    role_permissions = {
        "city_admin": {
            "settlement.cyclesettlement": {"view"},
            "settlement.settlementdifference": {"view", "change"},
        },
        "county_officer": {
            "settlement.cyclesettlement": {"view"},
            "settlement.settlementdifference": {"view", "change"},
        },
    }

    def ready(self) -> None:
        # A settled cycle's manifest reaching the inbox is booked on this ledger: exchange, below settlement,
        # is handed the booking (imported here: models load only once the app registry is ready).
        from citycard.tenants.exchange import services as exchange
        from citycard.tenants.settlement.services import cycle_settlement_on_delivery

        if exchange.CYCLE_SETTLEMENT_SINK is None:
            exchange.CYCLE_SETTLEMENT_SINK = cycle_settlement_on_delivery

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ExchangeConfig(AppConfig):
    """A tenant's side of interop (互联互通收发): its outbox, its inbox, and the issuer's validation."""

    name = "citycard.tenants.exchange"
    label = "exchange"
    verbose_name = _("Interop outbox and inbox")

    role_permissions = {
        "city_admin": {
            "exchange.outboxmessage": {"view"},
            "exchange.inboxmessage": {"view"},
            "exchange.seencounter": {"view"},
            "exchange.issuerrejection": {"view"},
        },
        "county_officer": {
            "exchange.outboxmessage": {"view"},
            "exchange.inboxmessage": {"view"},
            "exchange.issuerrejection": {"view"},
        },
    }

    def ready(self) -> None:
        # Roaming taps of every upload go to the outbox inside the upload's transaction: exchange, above
        # terminals, hands it its sink (imported here: models load only once the app registry is ready).
        from citycard.tenants.exchange.services import outbox_put_clearing_records
        from citycard.tenants.terminals import checks

        if checks.ROAMING_SINK is None:
            checks.ROAMING_SINK = outbox_put_clearing_records

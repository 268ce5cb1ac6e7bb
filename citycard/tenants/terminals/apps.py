from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TerminalsConfig(AppConfig):
    """Terminal registry and the back office's batch ingestion (终端管理与交易采集)."""

    name = "citycard.tenants.terminals"
    label = "terminals"
    verbose_name = _("Terminals and transactions")

    role_permissions = {
        "city_admin": {
            "terminals.terminal": {"view", "add", "change"},
            "terminals.terminalkey": {"view"},
            "terminals.batch": {"view"},
            "terminals.transaction": {"view"},
            "terminals.journey": {"view"},
            "terminals.reviewflag": {"view", "change"},
            "terminals.tapexception": {"view", "change"},
        },
        # A county registers and runs its own terminals (its own schema); it reads its own batches.
        "county_officer": {
            "terminals.terminal": {"view", "add", "change"},
            "terminals.terminalkey": {"view"},
            "terminals.batch": {"view"},
            "terminals.transaction": {"view"},
            "terminals.journey": {"view"},
            "terminals.reviewflag": {"view"},
            "terminals.tapexception": {"view"},
        },
    }
    demo_step = "citycard.tenants.terminals.demo.demo_step"
    demo_order = 60

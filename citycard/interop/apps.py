from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InteropConfig(AppConfig):
    """Roaming agreements, signed messages, clearing cycles, netting, settlement (互联互通清算)."""

    name = "citycard.interop"
    label = "interop"
    verbose_name = _("Interop clearing")

    role_permissions = {
        "clearing_staff": {
            "interop.roamingagreement": {"view"},
            "interop.agreementversion": {"view", "add"},
            "interop.clearingcycle": {"view"},
            "interop.clearingrecord": {"view"},
            "interop.bilateralposition": {"view"},
            "interop.netposition": {"view"},
            "interop.settlementinstruction": {"view"},
            "interop.journal": {"view"},
            "interop.posting": {"view"},
            "interop.reconciliationfile": {"view"},
            "interop.dispute": {"view", "change"},
            "interop.messagerefusal": {"view"},
            "interop.receivedmessage": {"view"},
        },
        "platform_operator": {
            "interop.roamingagreement": {"view"},
            "interop.agreementversion": {"view", "add"},
            "interop.clearingcycle": {"view"},
            "interop.messagerefusal": {"view"},
        },
    }
    demo_step = "citycard.interop.demo.demo_step"
    demo_order = 80
    national_step = (
        "citycard.interop.national.national_step"  # `citycard demo --national`'s network and cycle
    )

    def ready(self) -> None:
        # The roaming agreements set the visitor policy the members' fare rules publish (docs/clearing.md).
        from citycard.interop.selectors import (
            agreed_visitor_policies,
            reconciliation_file_text,
            visitor_policy_changes,
        )
        from citycard.tenants.exchange.selectors import reconciliation_source_register
        from citycard.tenants.fares.selectors import (
            visitor_policy_schedule_register,
            visitor_policy_source_register,
        )

        visitor_policy_source_register(agreed_visitor_policies)
        # …and the policy changes their later versions schedule, which publishing now must keep.
        visitor_policy_schedule_register(visitor_policy_changes)
        # Reconciliation files reach the tenants as signed manifests; the text is fetched by its digest.
        reconciliation_source_register(reconciliation_file_text)

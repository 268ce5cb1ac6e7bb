"""What an API key or a platform user may do through GraphQL: the one list of scopes.

Partner scopes are granted to an API key (one tenant, chosen scopes) by that tenant's city administrator.
Platform scopes follow a platform user's role. GraphQL fields and mutations name the scope they need in
their ``Meta`` (see citycard/graphql/core/permissions.py); nothing else defines scopes.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from citycard.platform.models import Role


class Scope(models.TextChoices):
    """Scopes of a partner app's API key on its tenant's ``/graphql/``."""

    CARDS_READ = "cards:read", _("Read cards: status, scheme, validity, enabled applications, balances")
    CARDS_REPORT_LOSS = "cards:report_loss", _("Report a card lost")
    CARDS_APPLY = "cards:apply", _("Apply for a card on a cardholder's behalf")
    CARDHOLDERS_VERIFY = "cardholders:verify", _("Verify a cardholder (card number + ID number -> yes/no)")
    CARDHOLDERS_CATEGORIES = (
        "cardholders:categories",
        _("Read a cardholder's rider categories and concessions"),
    )
    TRANSACTIONS_READ = "transactions:read", _("Read transactions (taps and purchases)")
    TERMINALS_READ = "terminals:read", _("Read the terminal registry")
    SERVICE_POINTS_READ = "service_points:read", _("Search service points")
    SERVICE_POINTS_ACCEPT = (
        "service_points:accept",
        _(
            "Ask whether a card or citizen code may use a service point's service now: yes/no, reason, "
            "masked name"
        ),
    )
    ENTITLEMENTS_READ = "entitlements:read", _("Read a card holder's entitlements and their uses")
    ENTITLEMENTS_BUY = "entitlements:buy", _("Buy an entitlement from the card's online account")
    MERCHANTS_PAY = "merchants:pay", _("Pay a merchant from a card's online account or citizen code")
    MERCHANTS_REFUND = "merchants:refund", _("Refund a merchant payment this key made")
    MERCHANTS_READ = "merchants:read", _("Read a card's merchant payments")
    CREDIT_READ = "credit:read", _("Read a card's credit line, its movements and its monthly bills (信用付)")
    CREDIT_PAY = "credit:pay", _("Pay a merchant on a card's credit line (信用付)")
    TOPUPS_CREATE = (
        "topups:create",
        _(
            "Open top-up orders through a payment channel (WeChat Pay, Alipay, UnionPay, the card's bank) and read them"
        ),
    )
    SUBSIDIES_READ = "subsidies:read", _("Read subsidy payments with item detail")
    MEDICAL_CLAIMS = (
        "medical:claims",
        _("Submit cross-city medical claims (异地就医) as a hospital, and read their outcome"),
    )


class PlatformScope(models.TextChoices):
    """Scopes of platform users on the platform's ``/graphql/``, granted by role."""

    TENANTS_READ = "tenants:read", _("Read tenants and their counties")
    TENANTS_MANAGE = "tenants:manage", _("Suspend and activate tenants")
    NETWORKS_READ = "networks:read", _("Read roaming networks and their members")
    CLEARING_READ = "clearing:read", _("Read agreements, clearing cycles, positions, exceptions, disputes")
    CLEARING_MANAGE = "clearing:manage", _("Step clearing cycles, record and resolve disputes")


PLATFORM_ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.PLATFORM_OPERATOR: frozenset(
        {
            PlatformScope.TENANTS_READ,
            PlatformScope.TENANTS_MANAGE,
            PlatformScope.NETWORKS_READ,
            PlatformScope.CLEARING_READ,
        }
    ),
    # Running clearing is the clearing staff's job alone: operators read it.
    Role.CLEARING_STAFF: frozenset(
        {
            PlatformScope.TENANTS_READ,
            PlatformScope.NETWORKS_READ,
            PlatformScope.CLEARING_READ,
            PlatformScope.CLEARING_MANAGE,
        }
    ),
}


def platform_scopes_of(role: str) -> frozenset[str]:
    return PLATFORM_ROLE_SCOPES.get(role, frozenset())

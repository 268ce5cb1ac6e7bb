"""What an API key or a platform user may do through GraphQL: the one list of scopes.

Partner scopes are granted to an API key (one tenant, chosen scopes) by that tenant's city administrator.
Platform scopes follow a platform user's role. GraphQL fields and mutations name the scope they need in
their ``Meta`` (see citycard/graphql/core/permissions.py); nothing else defines scopes.
"""

from __future__ import annotations

from django.db import models

from citycard.platform.models import Role


class Scope(models.TextChoices):
    """Scopes of a partner app's API key on its tenant's ``/graphql/``."""

    CARDS_READ = "cards:read", "Read cards: status, scheme, validity, enabled applications, balances"
    CARDS_REPORT_LOSS = "cards:report_loss", "Report a card lost (挂失)"
    CARDS_APPLY = "cards:apply", "Apply for a card on a cardholder's behalf"
    CARDHOLDERS_VERIFY = "cardholders:verify", "Verify a cardholder (card number + ID number -> yes/no)"
    CARDHOLDERS_CATEGORIES = "cardholders:categories", "Read a cardholder's rider categories and concessions"
    TRANSACTIONS_READ = "transactions:read", "Read transactions (taps and purchases)"
    TERMINALS_READ = "terminals:read", "Read the terminal registry"
    SERVICE_POINTS_READ = "service_points:read", "Search service points (服务网点)"
    SERVICE_POINTS_ACCEPT = (
        "service_points:accept",
        "Ask whether a card or citizen code may use a service point's service now (权益核验): yes/no, reason, "
        "masked name",
    )
    ENTITLEMENTS_READ = "entitlements:read", "Read a card holder's entitlements (权益) and their uses"
    ENTITLEMENTS_BUY = "entitlements:buy", "Buy an entitlement from the card's online account"
    SUBSIDIES_READ = "subsidies:read", "Read subsidy payments with item detail"
    MEDICAL_CLAIMS = (
        "medical:claims",
        "Submit cross-city medical claims (异地就医) as a hospital, and read their outcome",
    )


class PlatformScope(models.TextChoices):
    """Scopes of platform users on the platform's ``/graphql/``, granted by role."""

    TENANTS_READ = "tenants:read", "Read tenants and their counties"
    TENANTS_MANAGE = "tenants:manage", "Suspend and activate tenants"
    NETWORKS_READ = "networks:read", "Read roaming networks and their members"
    CLEARING_READ = "clearing:read", "Read agreements, clearing cycles, positions, exceptions, disputes"
    CLEARING_MANAGE = "clearing:manage", "Step clearing cycles, record and resolve disputes"


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

"""Demo step: a partner key for Hangzhou and a platform key for the clearing console, each with a sample
query that works against the running demo."""

from __future__ import annotations

import json

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.utils.translation import gettext
from django_tenants.utils import tenant_context

from citycard.platform import services
from citycard.platform.models import ApiKey, Tenant
from citycard.platform.scopes import PlatformScope, Scope
from citycard.tenants.accounts.models import LedgerAccount, SubsidyPayment
from citycard.tenants.terminals.models import Transaction

DEMO_APP = "Demo travel app"
SAMPLE = "query($card: String!) { cardTransactions(cardNumber: $card, first: 5) { edges { node { tappedAt amountFen route terminal { terminalId operator } } } } }"  # noqa: E501
CARD_SAMPLE = "query($card: String!) { card(number: $card) { state scheme { nameZh } expiresOn balance { accountFen purseShadowFen } } cardholderCategories(cardNumber: $card) { categories { code validTo } concessions { ruleId description } } subsidyPayments(cardNumber: $card, first: 5) { edges { node { programme { name } amountFen items { item amountFen } } } } }"  # noqa: E501

CLEARING_APP = "Demo clearing console"
CLEARING_SAMPLE = "{ clearingCycles(first: 5, filter: {states: [SETTLED, DISPUTED]}) { edges { node { label state totals { valid { records amountFen } rejected { records } } netPositions { positions { participant netFen } sumFen balanced } } } } }"  # noqa: E501


def demo_step(ctx) -> None:
    """Issue a fresh key (the old demo key is revoked: tokens are never stored), run the sample once."""
    for old in ApiKey.objects.filter(tenant__code="hangzhou", name=DEMO_APP, revoked_at__isnull=True):
        services.api_key_revoke(tenant_code="hangzhou", key_id=old.key_id, reason="demo re-run", actor="demo")
    key, token = services.api_key_issue(
        tenant_code="hangzhou",
        name=DEMO_APP,
        scopes=[
            Scope.TRANSACTIONS_READ,
            Scope.TERMINALS_READ,
            Scope.CARDS_READ,
            Scope.CARDHOLDERS_CATEGORIES,
            Scope.SUBSIDIES_READ,
            Scope.SERVICE_POINTS_READ,
        ],
        actor="demo",
    )
    with tenant_context(Tenant.objects.get(code="hangzhou")):
        busiest = (
            Transaction.objects.filter(issuer="330100")
            .values("card_no")
            .annotate(taps=Count("id"))
            .order_by("-taps", "card_no")
            .first()
        )
        # a card whose holder was paid a subsidy (the cards demo step pays the elderly)
        paid = SubsidyPayment.objects.order_by("id").values_list("cardholder_id", flat=True).first()
        account = LedgerAccount.objects.filter(cardholder_id=paid).first() if paid is not None else None
    connection.set_schema_to_public()
    card = busiest["card_no"] if busiest else "3301000000000000018"
    body = json.dumps({"query": SAMPLE, "variables": {"card": card}})
    response = Client().post(
        "/graphql/",
        body,
        content_type="application/json",
        HTTP_HOST=f"hangzhou.{settings.BASE_DOMAIN}",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    answer = response.json()
    edges = (answer.get("data") or {}).get("cardTransactions", {}) or {}
    card_facts = None
    if account is not None:
        card_body = json.dumps({"query": CARD_SAMPLE, "variables": {"card": account.card_no}})
        card_response = Client().post(
            "/graphql/",
            card_body,
            content_type="application/json",
            HTTP_HOST=f"hangzhou.{settings.BASE_DOMAIN}",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        card_answer = card_response.json()
        data = card_answer.get("data") or {}
        card_facts = {
            "body": card_body,
            "status": card_response.status_code,
            "errors": len(card_answer.get("errors", [])),
            "state": (data.get("card") or {}).get("state"),
            "payments": len(((data.get("subsidyPayments") or {}).get("edges")) or []),
        }
    ctx.facts["graphql_clearing"] = _clearing_sample()
    ctx.facts["graphql"] = {
        "token": token,
        "key_id": key.key_id,
        "body": body,
        "status": response.status_code,
        "nodes": len(edges.get("edges", [])),
        "cost": answer.get("extensions", {}).get("cost"),
        "card": card_facts,
    }
    ctx.facts.setdefault("reports", []).append(_report)


def _clearing_sample() -> dict:
    """A platform API key for a clearing console (clearing:read), and the settled cycles through it."""
    for old in ApiKey.objects.filter(tenant__code="public", name=CLEARING_APP, revoked_at__isnull=True):
        services.api_key_revoke(tenant_code="public", key_id=old.key_id, reason="demo re-run", actor="demo")
    key, token = services.api_key_issue(
        tenant_code="public",
        name=CLEARING_APP,
        scopes=[PlatformScope.CLEARING_READ, PlatformScope.NETWORKS_READ, PlatformScope.TENANTS_READ],
        actor="demo",
    )
    body = json.dumps({"query": CLEARING_SAMPLE})
    response = Client().post(
        "/graphql/",
        body,
        content_type="application/json",
        HTTP_HOST=settings.BASE_DOMAIN,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    connection.set_schema_to_public()
    answer = response.json()
    edges = (((answer.get("data") or {}).get("clearingCycles") or {}).get("edges")) or []
    return {
        "token": token,
        "key_id": key.key_id,
        "body": body,
        "status": response.status_code,
        "errors": len(answer.get("errors", [])),
        "cycles": len(edges),
        "balanced": all(e["node"]["netPositions"]["balanced"] for e in edges),
    }


def _cost(cost: dict | None) -> str:
    """The query's cost as its budget reads: ``10/1000``."""
    if not cost:
        return "-"
    return f"{cost.get('requestedQueryCost')}/{cost.get('maximumAvailable')}"


def _report(ctx) -> None:
    facts = ctx.facts["graphql"]
    url = ctx.url("hangzhou", "/graphql/")
    ctx.console.print(
        gettext("[bold]GraphQL[/bold] partner key for %(tenant)s (%(app)s, key %(key)s): %(token)s")
        % {"tenant": "hangzhou", "app": DEMO_APP, "key": facts["key_id"], "token": facts["token"]}
    )
    ctx.console.print(
        gettext("sample query answered %(status)s with %(nodes)s transactions, cost %(cost)s; try it:")
        % {"status": facts["status"], "nodes": facts["nodes"], "cost": _cost(facts["cost"])}
    )
    ctx.console.print(
        f"curl -s {url} -H 'Authorization: Bearer {facts['token']}' -H 'Content-Type: application/json' "
        f"-d '{facts['body']}'",
        soft_wrap=True,
        markup=False,
    )
    card = facts.get("card")
    if card:
        ctx.console.print(
            gettext(
                "card query answered %(status)s (%(errors)s errors): a card %(state)s with %(payments)s subsidy "
                "payments; try it:"
            )
            % card
        )
        ctx.console.print(
            f"curl -s {url} -H 'Authorization: Bearer {facts['token']}' -H 'Content-Type: application/json' "
            f"-d '{card['body']}'",
            soft_wrap=True,
            markup=False,
        )
    clearing = ctx.facts.get("graphql_clearing")
    platform_url = ctx.url(None, "/graphql/")
    if clearing:
        ctx.console.print(
            gettext(
                "[bold]GraphQL[/bold] platform key for the clearing console (%(app)s, key %(key)s): %(token)s"
            )
            % {"app": CLEARING_APP, "key": clearing["key_id"], "token": clearing["token"]}
        )
        ctx.console.print(
            gettext(
                "clearing query answered %(status)s (%(errors)s errors): %(cycles)s settled cycles, net positions "
                "%(balanced)s; try it:"
            )
            % {
                "status": clearing["status"],
                "errors": clearing["errors"],
                "cycles": clearing["cycles"],
                "balanced": gettext("balanced") if clearing["balanced"] else gettext("NOT BALANCED"),
            }
        )
        ctx.console.print(
            f"curl -s {platform_url} -H 'Authorization: Bearer {clearing['token']}' "
            f"-H 'Content-Type: application/json' -d '{clearing['body']}'",
            soft_wrap=True,
            markup=False,
        )
    ctx.console.print(
        gettext("Platform GraphQL (sign in as operator or clearing staff, or a platform key): %(url)s")
        % {"url": platform_url}
    )

"""Demo step: a partner key for Hangzhou, and a sample query that works against the running demo."""

from __future__ import annotations

import json

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.test import Client
from django_tenants.utils import tenant_context

from citycard.platform import services
from citycard.platform.models import ApiKey, Tenant
from citycard.platform.scopes import Scope
from citycard.tenants.terminals.models import Transaction

DEMO_APP = "Demo travel app"
SAMPLE = "query($card: String!) { cardTransactions(cardNumber: $card, first: 5) { edges { node { tappedAt amountFen route terminal { terminalId operator } } } } }"  # noqa: E501


def demo_step(ctx) -> None:
    """Issue a fresh key (the old demo key is revoked: tokens are never stored), run the sample once."""
    for old in ApiKey.objects.filter(tenant__code="hangzhou", name=DEMO_APP, revoked_at__isnull=True):
        services.api_key_revoke(tenant_code="hangzhou", key_id=old.key_id, reason="demo re-run", actor="demo")
    key, token = services.api_key_issue(
        tenant_code="hangzhou",
        name=DEMO_APP,
        scopes=[Scope.TRANSACTIONS_READ, Scope.TERMINALS_READ, Scope.CARDS_READ],
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
    ctx.facts["graphql"] = {
        "token": token,
        "key_id": key.key_id,
        "body": body,
        "status": response.status_code,
        "nodes": len(edges.get("edges", [])),
        "cost": answer.get("extensions", {}).get("cost"),
    }
    ctx.facts.setdefault("reports", []).append(_report)


def _report(ctx) -> None:
    facts = ctx.facts["graphql"]
    url = ctx.url("hangzhou", "/graphql/")
    ctx.console.print(
        f"[bold]GraphQL[/bold] partner key for hangzhou ({DEMO_APP}, key {facts['key_id']}): {facts['token']}"
    )
    ctx.console.print(
        f"sample query answered {facts['status']} with {facts['nodes']} transactions, cost {facts['cost']}; try it:"
    )
    ctx.console.print(
        f"curl -s {url} -H 'Authorization: Bearer {facts['token']}' -H 'Content-Type: application/json' "
        f"-d '{facts['body']}'",
        soft_wrap=True,
        markup=False,
    )
    ctx.console.print(f"Platform GraphQL (sign in as operator or clearing first): {ctx.url(None, '/graphql/')}")

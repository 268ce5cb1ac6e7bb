"""The providers' notify endpoints (public: every notification is verified by the provider's signature)
and the city clerk's reconciliation page (渠道对账): statement runs, the differences to resolve, the 长款
held in suspense (挂账) to match or refund, the providers' payouts."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from citycard.platform.errors import DomainError
from citycard.tenants.payments import selectors, services
from citycard.tenants.payments.models import DifferenceAction

RUNS_SHOWN = 50


@login_not_required  # no session: the notification's signature (each provider's) is what is trusted
@csrf_exempt
@require_POST
def notify(request: HttpRequest, channel_code: str) -> HttpResponse:
    try:
        reply = services.topup_notification_receive(
            channel_code=channel_code, headers=dict(request.headers.items()), body=request.body
        )
    except DomainError:
        return HttpResponse(status=404)
    response = HttpResponse(reply.body, status=reply.status)
    for name, value in reply.headers.items():
        response[name] = value
    return response


def reconciliation(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("payments.view_statementrun"):
        raise PermissionDenied
    suspense = list(selectors.suspense_items(open_only=True))
    return render(
        request,
        "payments/reconciliation.html",
        {
            "tenant": request.tenant,
            "runs": selectors.statement_runs()[:RUNS_SHOWN],
            "open": selectors.differences(open_only=True),
            "actions": DifferenceAction.choices,
            "can_resolve": request.user.has_perm("payments.change_reconexception"),
            "suspense": suspense,
            # A 长款 held in suspense is resolved there (matched or refunded), not from its difference's row.
            "held": {item.difference_id for item in suspense},
            "payouts": selectors.payouts()[:RUNS_SHOWN],
        },
    )


@require_POST
def resolve(request: HttpRequest, difference_id: int) -> HttpResponse:
    if not request.user.has_perm("payments.change_reconexception"):
        raise PermissionDenied
    try:
        services.difference_resolve(
            difference_id=difference_id,
            action=request.POST.get("action", ""),
            note=request.POST.get("note", ""),
            actor=request.user.username,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("payments:reconciliation")


@require_POST
def suspense_match(request: HttpRequest, item_id: int) -> HttpResponse:
    """Match a 长款 held in suspense to an order (its number) or a cardholder (a card number)."""
    if not request.user.has_perm("payments.change_reconexception"):
        raise PermissionDenied
    target = request.POST.get("target", "").strip()
    try:
        services.suspense_match(
            item_id=item_id,
            out_trade_no="" if target.isdigit() else target,
            card_no=target if target.isdigit() else "",
            note=request.POST.get("note", ""),
            actor=request.user.username,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("payments:reconciliation")


@require_POST
def suspense_refund(request: HttpRequest, item_id: int) -> HttpResponse:
    """Refund a 长款 held in suspense to the payer through its channel."""
    if not request.user.has_perm("payments.change_reconexception"):
        raise PermissionDenied
    try:
        services.suspense_refund(
            item_id=item_id, note=request.POST.get("note", ""), actor=request.user.username
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("payments:reconciliation")

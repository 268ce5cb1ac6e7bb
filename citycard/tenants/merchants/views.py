"""商户结算 Merchant settlement on the tenant's site, for its own users: the settlements of a Beijing day
(in yuan, for people) and each merchant's statement, as a page or as CSV in fen (for machines). Thin over
merchants.selectors; read only (settling is ``citycard merchants settle``)."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from citycard.platform.errors import DomainError
from citycard.tenants.merchants import selectors, services
from citycard.tenants.merchants.models import Means
from citycard.terminal_kit.beijing import BEIJING


def _day(request: HttpRequest) -> dt.date:
    try:
        return dt.date.fromisoformat(request.GET.get("day", ""))
    except ValueError:
        return timezone.now().astimezone(BEIJING).date() - dt.timedelta(days=1)


def settlement_day(request: HttpRequest) -> HttpResponse:
    day = _day(request)
    settlements = list(selectors.settlements_of_day(day=day))
    totals = {
        f: sum(getattr(s, f) for s in settlements) for f in ("gross_fen", "refunds_fen", "fee_fen", "net_fen")
    }
    return render(
        request,
        "merchants/settlement_day.html",
        {
            "tenant": request.tenant,
            "day": day,
            "previous": day - dt.timedelta(days=1),
            "next": day + dt.timedelta(days=1),
            "settlements": settlements,
            "totals": totals,
            "can_pay_out": request.user.has_perm("merchants.view_settlement"),
        },
    )


def payout_file(request: HttpRequest, day: str) -> HttpResponse:
    """The day's payout file (代付文件) for the bank: it holds the settlement account numbers in clear, so
    only users who may read settlements download it, and each download is audited."""
    if not request.user.has_perm("merchants.view_settlement"):
        raise PermissionDenied
    try:
        when = dt.date.fromisoformat(day)
    except ValueError:
        raise Http404("not a day") from None
    try:
        built = services.payout_file_build(day=when, actor=f"user:{request.user.username}")
    except DomainError:
        raise Http404("no settlement run") from None
    response = HttpResponse(built.text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{built.name}"'
    return response


def statement(request: HttpRequest, code: str, day: str) -> HttpResponse:
    try:
        when = dt.date.fromisoformat(day)
    except ValueError:
        raise Http404("not a day") from None
    found = selectors.statement_get(merchant_code=code, day=when)
    if found is None:
        raise Http404("no settlement")
    if request.GET.get("format") == "csv":
        response = HttpResponse(selectors.statement_csv(found), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="statement-{code}-{when.isoformat()}.csv"'
        return response
    means = dict(Means.choices)
    lines = [
        (line, selectors.card_no_mask(line.card_no), means.get(line.means, line.means))
        for line in found.lines
    ]
    return render(
        request,
        "merchants/statement.html",
        {
            "tenant": request.tenant,
            "s": found.settlement,
            "merchant": found.settlement.merchant,
            "lines": lines,
        },
    )

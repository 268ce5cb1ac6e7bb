"""The console's pages: thin over citycard.interop.selectors (reading) and services (stepping cycles,
disputes). Every page reads a fixed number of queries whatever the cycle's size (tests pin them).

Who may do what is the platform scopes' rule (citycard.platform.scopes): every platform user reads the
console (the site's middleware keeps everyone else out); only a role holding ``clearing:manage``
(clearing staff) steps cycles and records or resolves disputes, as on the platform's GraphQL.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from citycard.interop import selectors, services
from citycard.interop.console import clock
from citycard.interop.console.grid import (
    CHECK_TEXT,
    day_board,
    matrix_grid,
    positions_sum,
    step_index,
)
from citycard.interop.models import ClearingCycle, DisputeState
from citycard.platform.errors import DomainError
from citycard.platform.scopes import PlatformScope, platform_scopes_of

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
RECORDS_SHOWN = 500

# The one step each state leads to, with what the confirmation says.
STEPS = {
    "close": (
        "open",
        services.cycle_close,
        gettext_lazy("Close"),
        gettext_lazy("Cut the cycle off: no record joins it any more (late ones go to the next cycle)."),
    ),
    "validate": (
        "closed",
        services.cycle_validate,
        gettext_lazy("Validate"),
        gettext_lazy(
            "Each issuer validates its records; rejected ones become exceptions for their acquirers."
        ),
    ),
    "net": (
        "validated",
        services.cycle_net,
        gettext_lazy("Netting"),
        gettext_lazy("The bilateral matrix and the net positions, posted to the ledger."),
    ),
    "settle": (
        "netted",
        services.cycle_settle,
        gettext_lazy("Settle"),
        gettext_lazy("Settlement instructions and every participant's reconciliation file are sent."),
    ),
}
NEXT_STEP = {state: step for step, (state, *_rest) in STEPS.items()}


def can_manage(request: HttpRequest) -> bool:
    return PlatformScope.CLEARING_MANAGE in platform_scopes_of(getattr(request.user, "role", ""))


def _forbidden(request: HttpRequest) -> HttpResponse:
    """403 with one line saying why and what to do (the role is checked before anything is read)."""
    response = _render(
        request,
        "forbidden.html",
        {
            "reason": _(
                "Only clearing staff step cycles and record or resolve disputes; your role reads the console. "
                "Ask a clearing clerk to do it."
            )
        },
    )
    response.status_code = 403
    return response


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.username}"


def _day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _cycle(network: str, service: str, day: str) -> ClearingCycle:
    business_date = _day(day)
    cycle = (
        selectors.cycles_query(network_code=network, service=service)
        .filter(business_date=business_date)
        .first()
        if business_date
        else None
    )
    if cycle is None:
        raise Http404(_("No such clearing cycle."))
    return cycle


def cycle_url(cycle: ClearingCycle, suffix: str = "") -> str:
    return reverse(
        f"console:cycle{suffix}",
        kwargs={
            "network": cycle.agreement.network.code,
            "service": cycle.agreement.service,
            "day": cycle.business_date.isoformat(),
        },
    )


def _render(request, template: str, context: dict) -> HttpResponse:
    return render(request, f"console/{template}", {"can_manage": can_manage(request), **context})


# --- reading -----------------------------------------------------------------------------------------------


def today(request: HttpRequest) -> HttpResponse:
    """每日 Today: every network × service with its current and previous cycle, and what needs a person."""
    now = clock.now()
    on = _day(request.GET.get("date")) or now.astimezone(SHANGHAI).date()
    cycles = selectors.cycles_around(on=on)
    ids = [c.pk for c in cycles]
    board = day_board(
        selectors.agreements_list(),
        cycles,
        selectors.cycle_record_totals(cycle_ids=ids),
        selectors.open_dispute_counts(cycle_ids=ids),
        on,
    )
    stuck = selectors.cycles_stuck(now=now, older_than=dt.timedelta(seconds=settings.CLEARING_RESUME_AFTER_S))
    open_disputes = list(
        selectors.disputes_query(states=[DisputeState.OPEN]).order_by("raised_at", "pk")[:50]
    )
    return _render(
        request,
        "today.html",
        {
            "on": on,
            "is_today": on == now.astimezone(SHANGHAI).date(),
            "day_before": on - dt.timedelta(days=1),
            "day_after": on + dt.timedelta(days=1),
            "board": board,
            "stuck": [(c, NEXT_STEP.get(c.state), _why_stuck(c, now)) for c in stuck],
            "open_disputes": open_disputes,
            "now": now,
        },
    )


def _idle(seconds: float) -> str:
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return _("%(d)d d %(h)d h") % {"d": days, "h": hours}
    return _("%(h)d h %(m)02d min") % {"h": hours, "m": minutes}


def _why_stuck(cycle: ClearingCycle, now: dt.datetime) -> str:
    """One line: what the cycle waits for, and for how long."""
    if cycle.state == "open":
        return _("still open %(idle)s after its cut-off: close it") % {
            "idle": _idle((now - cycle.cut_off_at).total_seconds())
        }
    since = cycle.last_moved or cycle.cut_off_at
    step = NEXT_STEP.get(cycle.state)
    return _("%(state)s for %(idle)s since its last step; next: %(step)s") % {
        "state": cycle.get_state_display(),
        "idle": _idle((now - since).total_seconds()),
        "step": STEPS[step][2] if step else "",
    }


def cycle_page(request: HttpRequest, network: str, service: str, day: str) -> HttpResponse:
    """清算周期 Cycle: totals, the matrix, net positions (Σ = 0), instructions, files, steps, checks."""
    cycle = _cycle(network, service, day)
    ids = [cycle.pk]
    totals = selectors.cycle_record_totals(cycle_ids=ids)[cycle.pk]
    positions = list(selectors.net_positions_of(cycle_ids=ids))
    exceptions: dict[str, tuple[int, int]] = {}
    for row in selectors.exception_summary(cycle_ids=ids):
        n, amount = exceptions.get(row["reason"], (0, 0))
        exceptions[row["reason"]] = (n + row["records"], amount + row["amount_fen"])
    # Issuers that ran the same checks share a row (usually all of them).
    by_checks: dict[tuple[str, ...], list[str]] = {}
    for issuer, names in sorted((cycle.validation_checks or {}).items()):
        by_checks.setdefault(tuple(names), []).append(issuer)
    checks = [
        (issuers, [(name, CHECK_TEXT.get(name, name)) for name in names])
        for names, issuers in by_checks.items()
    ]
    audit = selectors.cycle_steps(cycle=cycle)
    steps = [
        {
            "step": name,
            "at": getattr(cycle, f"{name}_at"),
            "done_by": [entry for entry in audit if entry["step"] == name],
        }
        for name in selectors.CYCLE_STEPS[1:]
    ]
    resumes = [entry for entry in audit if entry["step"] == "resumed"]
    return _render(
        request,
        "cycle.html",
        {
            "cycle": cycle,
            "label": services.cycle_label(cycle),
            "progress": step_index(cycle.state),
            "step_names": selectors.CYCLE_STEPS,
            "totals": {
                status: {"records": n, "amount_fen": amount} for status, (n, amount) in sorted(totals.items())
            },
            "all_records": sum(n for n, _amount in totals.values()),
            "all_fen": sum(amount for _n, amount in totals.values()),
            "matrix": matrix_grid(selectors.bilateral_of(cycle_ids=ids)),
            "positions": positions,
            "positions_sum": positions_sum(positions),
            "instructions": list(selectors.instructions_of(cycle_ids=ids)),
            "files": list(selectors.reconciliation_files_of(cycle_ids=ids)),
            "steps": steps,
            "resumes": resumes,
            "checks": checks,
            "exceptions": sorted(exceptions.items()),
            "disputes": list(selectors.disputes_query(cycle_ids=ids).order_by("-raised_at", "-pk")),
            "next_step": NEXT_STEP.get(cycle.state),
            "next_step_label": STEPS[NEXT_STEP[cycle.state]][2] if cycle.state in NEXT_STEP else "",
        },
    )


def cycle_exceptions(request: HttpRequest, network: str, service: str, day: str) -> HttpResponse:
    """异常 Exceptions of a cycle, by reason and issuer, each group a link to its records."""
    cycle = _cycle(network, service, day)
    groups: dict[str, dict] = {}
    for row in selectors.exception_summary(cycle_ids=[cycle.pk]):
        group = groups.setdefault(
            row["reason"], {"reason": row["reason"], "rows": [], "records": 0, "fen": 0}
        )
        group["rows"].append(row)
        group["records"] += row["records"]
        group["fen"] += row["amount_fen"]
    return _render(
        request,
        "exceptions.html",
        {"cycle": cycle, "label": services.cycle_label(cycle), "groups": list(groups.values())},
    )


def cycle_records(request: HttpRequest, network: str, service: str, day: str) -> HttpResponse:
    """The records of a cycle, by issuer, acquirer, status and reason: a cell of the matrix, an exception group."""
    cycle = _cycle(network, service, day)
    filters = {key: request.GET.get(key) or None for key in ("issuer", "acquirer", "status", "reason")}
    query = selectors.records_query(cycle_ids=[cycle.pk], **filters)
    records = list(query.order_by("record_id")[:RECORDS_SHOWN])
    count = len(records) if len(records) < RECORDS_SHOWN else query.count()
    return _render(
        request,
        "records.html",
        {
            "cycle": cycle,
            "label": services.cycle_label(cycle),
            "filters": {k: v for k, v in filters.items() if v},
            "records": [(r, r.status_in(cycle.state)) for r in records],
            "count": count,
            "shown": len(records),
            "total_fen": sum(r.amount_fen for r in records),
        },
    )


def record_page(request: HttpRequest, record_id: str) -> HttpResponse:
    record = selectors.record_with_cycle(record_id=record_id)
    if record is None:
        raise Http404(_("No such clearing record."))
    cycle = record.cycle
    return _render(
        request,
        "record.html",
        {
            "record": record,
            "status": record.status_in(cycle.state),
            "cycle": cycle,
            "label": services.cycle_label(cycle),
            "disputes": list(selectors.disputes_query().filter(record=record).order_by("-raised_at", "-pk")),
            "disputable": cycle.state in ("settled", "disputed") and record.kind != "adjustment",
        },
    )


def disputes(request: HttpRequest) -> HttpResponse:
    """争议 Disputes: open ones first (oldest first), or those of one state."""
    state = request.GET.get("state", DisputeState.OPEN)
    states = [state] if state in DisputeState.values else []
    shown = list(
        selectors.disputes_query(states=states).order_by(
            "raised_at" if state == DisputeState.OPEN else "-raised_at", "pk"
        )[:200]
    )
    return _render(
        request,
        "disputes.html",
        {"disputes": shown, "state": state if states else "all", "states": DisputeState.choices},
    )


def dispute_page(request: HttpRequest, dispute_id: int) -> HttpResponse:
    dispute = selectors.dispute_find(dispute_id=dispute_id)
    if dispute is None:
        raise Http404(_("No such dispute."))
    return _render(
        request,
        "dispute.html",
        {"dispute": dispute, "record": dispute.record, "label": services.cycle_label(dispute.record.cycle)},
    )


# --- acting: a confirmation page (GET), the service (POST) -------------------------------------------------


def cycle_step(request: HttpRequest, network: str, service: str, day: str, step: str) -> HttpResponse:
    """Step a cycle (close, validate, net, settle) through the same idempotent services the CLI uses."""
    if not can_manage(request):
        return _forbidden(request)
    if step not in STEPS:
        raise Http404(_("No such step."))
    cycle = _cycle(network, service, day)
    _needed, action, title, explanation = STEPS[step]
    error = None
    if request.method == "POST":
        try:
            cycle = action(cycle=cycle, now=clock.now(), actor=_actor(request))
        except DomainError as exc:
            error = exc.message
        else:
            messages.success(
                request,
                _("%(cycle)s is %(state)s.") % {"cycle": services.cycle_label(cycle), "state": cycle.state},
            )
            return redirect(cycle_url(cycle))
    context = {
        "cycle": cycle,
        "label": services.cycle_label(cycle),
        "step": step,
        "title": title,
        "explanation": explanation,
        "error": error,
    }
    if error is not None:  # refused: nothing was written; the confirmation again, with the reason
        return _refused(request, "confirm_step.html", context)
    return _render(request, "confirm_step.html", context)


def _refused(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    response = _render(request, template, context)
    response.status_code = 409
    return response


def dispute_raise(request: HttpRequest, record_id: str) -> HttpResponse:
    """Record a party's dispute of a settled record (as its signed message would), audited as the clerk."""
    if not can_manage(request):
        return _forbidden(request)
    record = selectors.record_with_cycle(record_id=record_id)
    if record is None:
        raise Http404(_("No such clearing record."))
    context = {
        "record": record,
        "label": services.cycle_label(record.cycle),
        "raised_by": request.POST.get("raised_by", record.issuer),
        "reason": request.POST.get("reason", ""),
        "error": None,
    }
    if request.method == "POST":
        reason = context["reason"].strip()
        try:
            if not reason:
                raise DomainError(_("Say why the record is disputed."), code="reason_required")
            dispute = services.dispute_raise(
                record_id=record.record_id,
                raised_by=context["raised_by"],
                reason=reason,
                now=clock.now(),
                actor=_actor(request),
            )
        except DomainError as exc:
            context["error"] = exc.message
            return _refused(request, "confirm_raise.html", context)
        messages.success(request, _("Dispute %(id)s recorded.") % {"id": dispute.pk})
        return redirect("console:dispute", dispute_id=dispute.pk)
    return _render(request, "confirm_raise.html", context)


def dispute_resolve(request: HttpRequest, dispute_id: int) -> HttpResponse:
    """Accept (an adjustment reversing the record joins the open cycle) or reject an open dispute."""
    if not can_manage(request):
        return _forbidden(request)
    dispute = selectors.dispute_find(dispute_id=dispute_id)
    if dispute is None:
        raise Http404(_("No such dispute."))
    decision = request.POST.get("decision") or request.GET.get("decision") or "reject"
    context = {
        "dispute": dispute,
        "record": dispute.record,
        "label": services.cycle_label(dispute.record.cycle),
        "accept": decision == "accept",
        "resolution": request.POST.get("resolution", ""),
        "error": None,
    }
    if request.method == "POST":
        resolution = context["resolution"].strip()
        try:
            if not resolution:
                raise DomainError(_("Say how the dispute was decided."), code="resolution_required")
            services.dispute_resolve(
                dispute_id=dispute.pk,
                accept=decision == "accept",
                resolution=resolution,
                actor=_actor(request),
                now=clock.now(),
            )
        except DomainError as exc:
            context["error"] = exc.message
            return _refused(request, "confirm_resolve.html", context)
        messages.success(request, _("Dispute %(id)s resolved.") % {"id": dispute.pk})
        return redirect("console:dispute", dispute_id=dispute.pk)
    return _render(request, "confirm_resolve.html", context)

"""The console's pages: thin over citycard.interop.selectors (reading) and services (stepping cycles,
disputes). Every page reads a fixed number of queries whatever the cycle's size (tests pin them).

Who may do what is the platform scopes' rule (citycard.platform.scopes): every platform user reads the
console (the site's middleware keeps everyone else out); only a role holding ``clearing:manage``
(clearing staff) steps cycles and records or resolves disputes, as on the platform's GraphQL.
"""

from __future__ import annotations

import base64
import datetime as dt
import json

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from citycard.interop import selectors
from citycard.interop.console import clock
from citycard.interop.console.grid import (
    CHECK_TEXT,
    day_board,
    file_rows,
    instruction_rows,
    largest_payers_and_receivers,
    matrix_grid,
    position_rows,
    positions_sum,
    record_rows,
    state_label,
    status_label,
    step_index,
)
from citycard.interop.models import ClearingCycle, DisputeState
from citycard.interop.services import disputes as dispute_services
from citycard.interop.services.cycles import cycle_close, cycle_net, cycle_settle, cycle_validate
from citycard.platform import charts as chart_specs
from citycard.platform.errors import DomainError
from citycard.platform.reasons import reason_text
from citycard.platform.scopes import PlatformScope, platform_scopes_of
from citycard.terminal_kit.beijing import BEIJING

RECORDS_SHOWN = 500
# Up to this many participants the cycle page draws the bilateral matrix as a table as well as a heat map;
# beyond (a national network: 300 × 299 cells) the heat map and the top-N lists only.
MATRIX_TABLE_MAX_PARTICIPANTS = 30
TOP_N = selectors.MATRIX_LARGEST
CHART_DAYS = (30, 90)
# Participants a clerk may add to a large network's net-position chart by name, beside the top N.
CHART_CHOSEN_MAX = 10

# The one step each state leads to, with what the confirmation says.
STEPS = {
    "close": (
        "open",
        cycle_close,
        gettext_lazy("Close"),
        gettext_lazy("Cut the cycle off: no record joins it any more (late ones go to the next cycle)."),
    ),
    "validate": (
        "closed",
        cycle_validate,
        gettext_lazy("Validate"),
        gettext_lazy(
            "Each issuer validates its records; rejected ones become exceptions for their acquirers."
        ),
    ),
    "net": (
        "validated",
        cycle_net,
        gettext_lazy("Netting"),
        gettext_lazy("The bilateral matrix and the net positions, posted to the ledger."),
    ),
    "settle": (
        "netted",
        cycle_settle,
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


def _files_base(cycle: ClearingCycle) -> str:
    """The reconciliation files' URL up to the participant (``…/files/``), reversed once for every row."""
    url = reverse(
        "console:reconciliation_file",
        kwargs={
            "network": cycle.agreement.network.code,
            "service": cycle.agreement.service,
            "day": cycle.business_date.isoformat(),
            "participant": "p",
        },
    )
    return url[: -len("p.csv")]


def _render(request, template: str, context: dict) -> HttpResponse:
    return render(request, f"console/{template}", {"can_manage": can_manage(request), **context})


# --- reading -----------------------------------------------------------------------------------------------


def today(request: HttpRequest) -> HttpResponse:
    """每日 Today: every network × service with its current and previous cycle, and what needs a person."""
    now = clock.now()
    on = _day(request.GET.get("date")) or now.astimezone(BEIJING).date()
    cycles = selectors.cycles_around(on=on)
    ids = [c.pk for c in cycles]
    board = day_board(
        selectors.agreements_list(),
        cycles,
        selectors.cycle_record_totals_of(cycles=cycles),
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
            "is_today": on == now.astimezone(BEIJING).date(),
            "day_before": on - dt.timedelta(days=1),
            "day_after": on + dt.timedelta(days=1),
            "board": board,
            "stuck": [
                (c, NEXT_STEP.get(c.state), _step_label(NEXT_STEP.get(c.state)), _why_stuck(c, now))
                for c in stuck
            ],
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


def _step_label(step: str | None) -> str:
    """A step (close, validate, net, settle) as people read it: the label its confirmation page has."""
    return STEPS[step][2] if step in STEPS else ""


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
    positions = list(selectors.net_positions_of(cycle_ids=ids))
    exceptions = {
        reason: (n, amount) for reason, n, amount in selectors.exceptions_by_reason(cycle_id=cycle.pk)
    }
    drawn = selectors.bilateral_matrix_points(cycle_id=cycle.pk)
    if cycle.state in selectors.NETTED_STATES:
        # A netted cycle's valid records are its matrix (the issuers' row totals), its rejected ones the
        # exceptions: no third aggregate (cycle_record_totals_of reads the same figures).
        totals = {
            "valid": (sum(n for _c, n, _f in drawn["issuers"]), sum(f for _c, _n, f in drawn["issuers"]))
        }
        if exceptions:
            totals["rejected"] = (
                sum(n for n, _a in exceptions.values()),
                sum(a for _n, a in exceptions.values()),
            )
    else:
        totals = selectors.cycle_record_totals_of(cycles=[cycle])[cycle.pk]
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
            "label": state_label(name),
            "at": getattr(cycle, f"{name}_at"),
            "done_by": [entry for entry in audit if entry["step"] == name],
        }
        for name in selectors.CYCLE_STEPS[1:]
    ]
    resumes = [entry for entry in audit if entry["step"] == "resumed"]
    participants = len({c for c, _n, _f in drawn["acquirers"]} | {c for c, _n, _f in drawn["issuers"]})
    # A small network's matrix is a table too (parsed from the heat map's points: at most 30 × 29 cells);
    # a large one's is the heat map and the top-N lists only.
    as_table = participants <= MATRIX_TABLE_MAX_PARTICIPANTS
    matrix = matrix_grid(
        acquirers=drawn["acquirers"],
        issuers=drawn["issuers"],
        points=json.loads(drawn["points_json"]) if as_table else None,
    )
    payers, receivers = largest_payers_and_receivers(positions, TOP_N)
    instructions = list(selectors.instructions_of(cycle_ids=ids))
    files = list(selectors.reconciliation_files_of(cycle_ids=ids))
    return _render(
        request,
        "cycle.html",
        {
            "cycle": cycle,
            "label": cycle.label,
            "progress": step_index(cycle.state),
            "step_names": [state_label(name) for name in selectors.CYCLE_STEPS],
            "totals": {
                status: {"records": n, "amount_fen": amount, "label": status_label(status)}
                for status, (n, amount) in sorted(totals.items())
            },
            "all_records": sum(n for n, _amount in totals.values()),
            "all_fen": sum(amount for _n, amount in totals.values()),
            "matrix": matrix,
            "matrix_participants": participants,
            "matrix_as_table": as_table,
            "matrix_table_max": MATRIX_TABLE_MAX_PARTICIPANTS,
            "top_n": TOP_N,
            "largest_flows": drawn["largest"][:TOP_N],
            "largest_payers": payers,
            "largest_receivers": receivers,
            # JSON escaped for a script element as json_script does, the points checked to be numbers.
            "heatmap_json": mark_safe(
                chart_specs.heatmap_chart_json(
                    columns=matrix.acquirers,
                    rows=matrix.issuers,
                    points_json=drawn["points_json"],
                    column_name=str(gettext_lazy("acquirer")),
                    row_name=str(gettext_lazy("issuer")),
                    records_label=str(gettext_lazy("records")),
                )
            ),
            "positions": positions,
            "position_rows": position_rows(positions),
            "positions_sum": positions_sum(positions),
            "instructions": instructions,
            "instruction_rows": instruction_rows(instructions),
            "files": files,
            "file_rows": file_rows(files, file_base=_files_base(cycle), download=_("download")),
            "steps": steps,
            "resumes": resumes,
            "checks": checks,
            "exceptions": sorted(exceptions.items()),
            "disputes": list(selectors.disputes_query(cycle_ids=ids).order_by("-raised_at", "-pk")),
            "next_step": NEXT_STEP.get(cycle.state),
            "next_step_label": STEPS[NEXT_STEP[cycle.state]][2] if cycle.state in NEXT_STEP else "",
        },
    )


def charts(request: HttpRequest) -> HttpResponse:
    """趋势 Charts over the last 30 or 90 business days (to ``date``, default today): roaming records and
    value per day and network, the exception rate by reason, each participant's net position. Three
    aggregate queries, whatever the number of records."""
    now = clock.now()
    until = _day(request.GET.get("date")) or now.astimezone(BEIJING).date()
    try:
        days_back = int(request.GET.get("days", CHART_DAYS[0]))
    except ValueError:
        days_back = CHART_DAYS[0]
    days_back = days_back if days_back in CHART_DAYS else CHART_DAYS[0]
    days = chart_specs.days_between(until - dt.timedelta(days=days_back - 1), until)
    since = days[0]
    roaming = selectors.roaming_by_day(since=since, until=until)
    records = chart_specs.by_day(roaming, days=days, day="day", group="network", value="records")
    amounts = chart_specs.by_day(roaming, days=days, day="day", group="network", value="amount_fen")
    count_word, amount_word = _("record count"), _("Amount")
    roaming_chart = chart_specs.series_chart(
        days=days,
        axes=[
            {"name": str(gettext_lazy("records")), "unit": "count"},
            {"name": str(gettext_lazy("value")), "unit": "fen"},
        ],
        series=[
            *(
                {"name": f"{net} · {count_word}", "type": "bar", "axis": 0, "data": data}
                for net, data in records.items()
            ),
            *(
                {"name": f"{net} · {amount_word}", "type": "line", "axis": 1, "data": data}
                for net, data in amounts.items()
            ),
        ],
    )
    rejected = selectors.rejections_by_day(since=since, until=until)
    by_reason = chart_specs.by_day(rejected, days=days, day="day", group="reason", value="records")
    valid = [sum(line[i] or 0 for line in records.values()) for i in range(len(days))]
    all_rejected = [sum(line[i] or 0 for line in by_reason.values()) for i in range(len(days))]
    exception_chart = chart_specs.series_chart(
        days=days,
        axes=[{"name": str(gettext_lazy("rate")), "unit": "percent"}],
        series=[
            {
                "name": reason_text(reason),
                "type": "bar",
                "stack": "rate",
                "axis": 0,
                "data": [
                    chart_specs.percent(line[i] or 0, valid[i] + all_rejected[i]) for i in range(len(days))
                ],
            }
            for reason, line in by_reason.items()
        ],
    )
    # A national network's 300 participants are 300 lines: beyond the cycle page's threshold the chart draws
    # the top N by the money they moved, and any participant asked for by name (the selector, a reload).
    chosen = [code for code in request.GET.getlist("participant") if code][:CHART_CHOSEN_MAX]
    found = selectors.net_positions_chart(
        since=since, until=until, top=TOP_N, all_max=MATRIX_TABLE_MAX_PARTICIPANTS, chosen=chosen
    )
    nets = chart_specs.by_day(found["rows"], days=days, day="day", group="participant", value="net_fen")
    everyone = found["participants"]
    positions_large = len(everyone) > MATRIX_TABLE_MAX_PARTICIPANTS
    if positions_large:  # the top N first, largest first; then those chosen
        rank = {p["participant"]: p["rank"] for p in everyone}
        nets = dict(sorted(nets.items(), key=lambda item: (rank.get(item[0], len(rank) + 1), item[0])))
    positions_chart = chart_specs.series_chart(
        days=days,
        axes=[{"name": str(gettext_lazy("net")), "unit": "fen"}],
        series=[{"name": who, "type": "line", "axis": 0, "data": data} for who, data in nets.items()],
    )
    totals = {
        "records": sum(valid),
        "rejected": sum(all_rejected),
        "rate": chart_specs.percent(sum(all_rejected), sum(valid) + sum(all_rejected)),
        "amount_fen": sum(v or 0 for line in amounts.values() for v in line),
    }
    return _render(
        request,
        "charts.html",
        {
            "until": until,
            "since": since,
            "days_back": days_back,
            "choices": CHART_DAYS,
            "roaming_chart": roaming_chart,
            "exception_chart": exception_chart,
            "positions_chart": positions_chart,
            "positions_large": positions_large,
            "positions_participants": everyone,
            "positions_chosen": chosen,
            "top_n": TOP_N,
            "totals": totals,
            "reasons": sorted(
                ((reason, sum(v or 0 for v in line)) for reason, line in by_reason.items()),
                key=lambda item: -item[1],
            ),
        },
    )


EXCEPTION_ISSUERS_SHOWN = 50  # a reason's issuers, a page
EXCEPTION_GROUPS_SHOWN = 100  # an issuer's groups (reason × acquirer), a page


def _page_number(request: HttpRequest) -> int:
    try:
        return max(int(request.GET.get("page", 1)), 1)
    except ValueError:
        return 1


def cycle_exceptions(request: HttpRequest, network: str, service: str, day: str) -> HttpResponse:
    """异常 Exceptions of a cycle, by reason, issuer and acquirer, each group a link to its records. Up to
    ``MATRIX_TABLE_MAX_PARTICIPANTS`` participants every group is listed; beyond (a national network's
    ~18,000 groups) each reason shows its top issuers, and the groups are read per reason (its issuers,
    paged: ``?reason=``) or per issuer (its acquirers by reason, paged: ``?issuer=``). One aggregate query
    in every view."""
    cycle = _cycle(network, service, day)
    issuer = (request.GET.get("issuer") or "").strip() or None
    reason = (request.GET.get("reason") or "").strip() or None
    page = _page_number(request)
    context: dict = {
        "cycle": cycle,
        "label": cycle.label,
        "issuer": issuer,
        "reason": reason,
        "page": page,
        "top_n": TOP_N,
    }
    if issuer is not None:
        found = selectors.exception_groups_page(
            cycle_id=cycle.pk,
            issuer=issuer,
            reason=reason,
            offset=(page - 1) * EXCEPTION_GROUPS_SHOWN,
            limit=EXCEPTION_GROUPS_SHOWN,
        )
        context.update(view="issuer", found=found, pages=_pages(found["groups"], EXCEPTION_GROUPS_SHOWN))
    elif reason is not None:
        found = selectors.exception_issuers_page(
            cycle_id=cycle.pk,
            reason=reason,
            offset=(page - 1) * EXCEPTION_ISSUERS_SHOWN,
            limit=EXCEPTION_ISSUERS_SHOWN,
        )
        context.update(view="reason", found=found, pages=_pages(found["issuers"], EXCEPTION_ISSUERS_SHOWN))
    else:
        overview = selectors.exception_overview(
            cycle_id=cycle.pk, top=TOP_N, detail_max=MATRIX_TABLE_MAX_PARTICIPANTS
        )
        groups: dict[str, dict] = {
            r["reason"]: {
                "reason": r["reason"],
                "rows": [],
                "records": r["records"],
                "fen": r["amount_fen"],
                "issuers": r["issuers"],
                "groups": r["groups"],
                "top": overview["top_issuers"].get(r["reason"], []),
            }
            for r in overview["reasons"]
        }
        for row in overview["groups"] or ():
            groups[row["reason"]]["rows"].append(row)
        context.update(
            view="all",
            groups=list(groups.values()),
            large=overview["groups"] is None,
            participants=overview["participants"],
            table_max=MATRIX_TABLE_MAX_PARTICIPANTS,
        )
    if context.get("pages"):
        params = request.GET.copy()
        params["page"] = page + 1
        context["next_query"] = params.urlencode() if page < context["pages"] else None
        params["page"] = page - 1
        context["previous_query"] = params.urlencode() if page > 1 else None
    return _render(request, "exceptions.html", context)


def _pages(count: int, size: int) -> int:
    return max((count + size - 1) // size, 1)


def cycle_records(request: HttpRequest, network: str, service: str, day: str) -> HttpResponse:
    """The records of a cycle, by issuer, acquirer, status and reason: a cell of the matrix, an exception group.
    500 a page in record id order, paged by key (``?after=<last record id of the page before>``), so the
    last page of a million-record cell costs what the first does."""
    cycle = _cycle(network, service, day)
    filters = {key: request.GET.get(key) or None for key in ("issuer", "acquirer", "status", "reason")}
    after = request.GET.get("after") or None
    query = selectors.records_query(cycle_ids=[cycle.pk], **filters)
    page = selectors.records_page(query=query, after=after, size=RECORDS_SHOWN + 1)
    more = len(page) > RECORDS_SHOWN
    records = page[:RECORDS_SHOWN]
    # The count: free on a first page that holds everything, else one count of the filter.
    count = (
        len(records)
        if after is None and not more
        else selectors.records_count(cycle=cycle, query=query, **filters)
    )
    params = request.GET.copy()
    if more:
        params["after"] = records[-1].record_id
    return _render(
        request,
        "records.html",
        {
            "cycle": cycle,
            "label": cycle.label,
            "filters": {k: v for k, v in filters.items() if v},
            "rows": record_rows(
                records,
                cycle_state=cycle.state,
                # One reverse for the page, not one per row.
                record_base=reverse("console:record", kwargs={"record_id": "_"})[:-2],
            ),
            "count": count,
            "shown": len(records),
            "after": after,
            "next_query": params.urlencode() if more else None,
            "first_query": _without(request.GET, "after"),
            "total_fen": sum(r.amount_fen for r in records),
        },
    )


def _without(query, key: str) -> str:
    params = query.copy()
    params.pop(key, None)
    return params.urlencode()


def reconciliation_download(
    request: HttpRequest, network: str, service: str, day: str, participant: str
) -> HttpResponse:
    """对账文件 A participant's reconciliation file of the cycle, as stored (CSV, UTF-8), with its SHA-256 in
    the ``Digest`` header (RFC 3230, base64) and ``X-Content-SHA256`` (hex), as its signed manifest names."""
    cycle = _cycle(network, service, day)
    found = selectors.reconciliation_file_download(cycle_id=cycle.pk, participant=participant)
    if found is None:
        raise Http404(_("No such reconciliation file."))
    sha256, text = found
    data = text.encode()
    response = HttpResponse(data, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="rcn-{cycle.label}-{participant}.csv"'
    response["Digest"] = "sha-256=" + base64.b64encode(bytes.fromhex(sha256)).decode()
    response["X-Content-SHA256"] = sha256
    return response


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
            "status_label": status_label(record.status_in(cycle.state)),
            "cycle": cycle,
            "label": cycle.label,
            "disputes": list(selectors.disputes_query().filter(record=record).order_by("-raised_at", "-pk")),
            "disputable": cycle.state in ("settled", "disputed") and record.kind != "adjustment",
            "claim": _claim_view(record),
        },
    )


def _claim_view(record) -> dict | None:
    """A medical claim's record (异地就医): the claim's lines as the treatment place priced them (per item:
    covered, partly covered, self-pay) and the insured place's adjudication (per category: eligible,
    deductible, ratio, fund share; the annual cap), both as the signed messages carried them."""
    if record.kind != "claim":
        return None
    claim, outcome = record.data.get("claim", {}), record.data.get("adjudication", {})
    detail = outcome.get("detail", {})
    lines = claim.get("lines", [])
    return {
        "claim": claim,
        "outcome": outcome,
        "lines": lines,
        "lines_fen": {
            key: sum(int(line.get(key, 0)) for line in lines)
            for key in ("amount_fen", "eligible_fen", "self_pay_fen")
        },
        "categories": sorted(detail.get("categories", {}).items()),
        "before_cap_fen": detail.get("before_cap_fen"),
        "cap_left_fen": detail.get("cap_left_fen"),
        "policy": detail.get("policy", {}),
    }


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
        {"dispute": dispute, "record": dispute.record, "label": dispute.record.cycle.label},
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
                _("%(cycle)s is %(state)s.") % {"cycle": cycle.label, "state": cycle.state},
            )
            return redirect(cycle_url(cycle))
    context = {
        "cycle": cycle,
        "label": cycle.label,
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
        "label": record.cycle.label,
        "raised_by": request.POST.get("raised_by", record.issuer),
        "reason": request.POST.get("reason", ""),
        "error": None,
    }
    if request.method == "POST":
        reason = context["reason"].strip()
        try:
            if not reason:
                raise DomainError(_("Say why the record is disputed."), code="reason_required")
            dispute = dispute_services.dispute_raise(
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
        "label": dispute.record.cycle.label,
        "accept": decision == "accept",
        "resolution": request.POST.get("resolution", ""),
        "error": None,
    }
    if request.method == "POST":
        resolution = context["resolution"].strip()
        try:
            if not resolution:
                raise DomainError(_("Say how the dispute was decided."), code="resolution_required")
            dispute_services.dispute_resolve(
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

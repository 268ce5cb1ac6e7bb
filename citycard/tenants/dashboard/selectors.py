"""What the city dashboard reads, one query each, all in the tenant's own schema: its cards, its terminals'
taps, its review flags, its metro half journeys released, its hotlists, its subsidy runs, the clearing
results the platform delivered to it as signed messages (reconciliation manifests, exceptions) in its inbox,
and what it rejected as issuer when asked to validate (its kept answers)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Count, Max, Min, Sum

from citycard.tenants.accounts.models import SubsidyRun
from citycard.tenants.cards.models import Card, HotlistHead
from citycard.tenants.exchange.models import InboxMessage, IssuerRejection, TerminalHotlistHead
from citycard.tenants.terminals.models import Journey, JourneyStatus, ReviewFlag, Routing, TapDay
from citycard.terminal_kit.beijing import BEIJING


def cards_by_scheme_and_state() -> list[dict[str, Any]]:
    """``{"scheme", "scheme_name", "state", "cards"}`` for every scheme and state with cards."""
    return list(
        Card.objects.values("scheme__code", "scheme__name_zh", "state")
        .annotate(cards=Count("id"))
        .order_by("scheme__code", "state")
    )


def taps_by_day(*, since: dt.date, until: dt.date) -> list[dict[str, Any]]:
    """The taps this tenant's terminals stored per Beijing day and routing (own cards, roaming cards that
    clear with their issuer, held ones): ``{"day", "routing", "taps", "amount_fen"}``. Read from the day
    table the database keeps as taps are stored (``TapDay``): a few rows a day, however many taps."""
    rows = (
        TapDay.objects.filter(day__gte=since, day__lte=until)
        .values("day", "routing")
        .annotate(day_taps=Sum("taps"), day_fen=Sum("amount_fen"))
        .filter(day_taps__gt=0)
        .order_by("day", "routing")
    )
    return [
        {"day": r["day"], "routing": r["routing"], "taps": r["day_taps"], "amount_fen": int(r["day_fen"])}
        for r in rows
    ]


ROUTINGS = (Routing.OWN, Routing.ROAMING, Routing.HELD)


def reconciliation_manifests(*, since: dt.date) -> list[dict[str, Any]]:
    """The signed manifests of the reconciliation files delivered to this tenant (a county's: its city's
    file, which lists the county's taps) for cycles of business date ``since`` or later, newest first:
    ``{"cycle", "network", "service", "business_date", "participant", "sha256", "totals", "message_id"}``."""
    found = []
    for message_id, body in InboxMessage.objects.filter(
        kind="clearing.reconciliation",
        received_at__gte=dt.datetime.combine(since, dt.time(), tzinfo=BEIJING),
    ).values_list("message_id", "envelope__payload__body"):
        label = body["cycle"]  # <network>-<service>-<YYYY-MM-DD>
        network, service = label[:-11].split("-", 1)
        found.append(
            {
                "cycle": label,
                "network": network,
                "service": service,
                "business_date": dt.date.fromisoformat(label[-10:]),
                "participant": body["participant"],
                "sha256": body["sha256"],
                "totals": body["totals"],
                "message_id": message_id,
            }
        )
    return sorted(found, key=lambda m: (m["business_date"], m["cycle"]), reverse=True)


def delivered_exceptions(*, since: dt.date) -> list[dict[str, Any]]:
    """The exceptions delivered to this tenant as acquirer (records of its terminals an issuer rejected),
    per cycle, issuer and reason: ``{"cycle", "issuer", "reason", "records", "amount_fen"}``."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for body in InboxMessage.objects.filter(
        kind="clearing.exceptions", received_at__gte=dt.datetime.combine(since, dt.time(), tzinfo=BEIJING)
    ).values_list("envelope__payload__body", flat=True):
        for item in body["exceptions"]:
            group = groups.setdefault((body["cycle"], item["issuer"], item["reason"]), [0, 0])
            group[0] += 1
            group[1] += int(item.get("amount_fen", 0))
    return [
        {"cycle": cycle, "issuer": issuer, "reason": reason, "records": n, "amount_fen": fen}
        for (cycle, issuer, reason), (n, fen) in sorted(groups.items(), reverse=True)
    ]


CARDS_LISTED = 5


def issuer_rejections(*, since: dt.date, limit: int = 50) -> list[dict[str, Any]]:
    """The exceptions concerning this tenant's cards (发卡方拒绝): the records of its cards it rejected when the
    platform asked it to validate, answered since ``since`` (Beijing), per cycle, acquirer and reason, newest
    first: ``{"cycle", "acquirer", "reason", "records", "amount_fen", "card_count", "cards"}`` (``cards``:
    the first few card numbers, which are not personal data). One query."""
    rows = (
        IssuerRejection.objects.filter(answered_at__gte=dt.datetime.combine(since, dt.time(), tzinfo=BEIJING))
        .values("cycle", "acquirer", "reason")
        .annotate(
            records=Count("id"),
            amount_fen=Sum("amount_fen"),
            card_count=Count("card_no", distinct=True),
            cards=ArrayAgg("card_no", distinct=True, order_by="card_no"),
            last=Max("answered_at"),
        )
        .order_by("-last", "-cycle", "acquirer", "reason")[:limit]
    )
    return [{**row, "cards": row["cards"][:CARDS_LISTED]} for row in rows]


def review_flags_waiting() -> list[dict[str, Any]]:
    """Review flags (待复核) not resolved yet, by code: ``{"code", "flags", "oldest"}``."""
    return list(
        ReviewFlag.objects.filter(resolved_at__isnull=True)
        .values("code")
        .annotate(flags=Count("id"), oldest=Min("created_at"))
        .order_by("-flags", "code")
    )


def hotlist_versions() -> dict[str, Any]:
    """The tenant's own hotlist version (黑名单) and the one its terminals download (its own with the
    city's and the network's), with when each last changed. Two queries (one row each)."""
    return {
        "own": HotlistHead.objects.values("version", "changed_at").first(),
        "terminals": TerminalHotlistHead.objects.values("version", "changed_at").first(),
    }


def subsidy_runs(*, limit: int = 10) -> list[SubsidyRun]:
    """The latest subsidy runs (补贴发放) with their programme, newest first."""
    return list(SubsidyRun.objects.select_related("programme").order_by("-at", "-pk")[:limit])


def half_journeys_released(*, since: dt.date, limit: int = 20) -> list[dict[str, Any]]:
    """The metro half journeys released after their time-out since ``since`` (Beijing), newest first (半程
    超时释放): ``{"released_at", "released_tx_id", "card_no", "routing", "line", "origin", "destination",
    "entered_at", "exited_at", "status", "amount_fen"}`` — ``amount_fen`` what the released tap took
    (the entry's for an entry without exit, the exit's otherwise). One query (a partial index)."""
    rows = (
        Journey.objects.filter(released_at__gte=dt.datetime.combine(since, dt.time(), tzinfo=BEIJING))
        .order_by("-released_at", "-id")
        .values(
            "released_at",
            "released_tx_id",
            "card_no",
            "routing",
            "line",
            "origin",
            "destination",
            "entered_at",
            "exited_at",
            "status",
            "entry_fen",
            "exit_fen",
        )[:limit]
    )
    routings = dict(Routing.choices)
    return [
        {
            **row,
            "routing_label": routings.get(row["routing"], row["routing"]),
            "amount_fen": row["entry_fen"] if row["status"] == JourneyStatus.OPEN else row["exit_fen"],
        }
        for row in rows
    ]

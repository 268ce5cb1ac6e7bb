"""A large network's cycle built straight from records (docs/clearing.md, "A national network"): participants
without tenants (netting and settlement need only their codes; no file is delivered), records inserted as
collection would, ~2% rejected by their issuer, then netted and settled by the services. Used by
tests/interop/test_national_network.py (10 and 40 participants, every pair) and the browser test of the
300 × 300 heat map (300 participants, a few issuers per acquirer: a few thousand records)."""

from __future__ import annotations

import datetime as dt
import json
import random

from citycard.interop.models import ClearingCycle, CycleState
from citycard.interop.services.cycles import cycle_get_or_create, cycle_net, cycle_settle
from citycard.interop.services.records import records_insert
from citycard.interop.terms import fee_fen

from .conftest import at

REASONS = ("tac_invalid", "hotlisted", "card_counter_gap")


def participants_named(n: int) -> list[str]:
    """``n`` participant codes, ``city000`` …"""
    return [f"city{i:03d}" for i in range(n)]


def cycle_of(
    day: dt.date,
    participants: list[str],
    *,
    seed: int,
    settle: bool = True,
    issuers_per_acquirer: int | None = None,
    reasons: tuple[str, ...] = ("tac_invalid",),
) -> tuple[ClearingCycle, list[tuple]]:
    """A validated cycle where every participant acquires for most others (1–3 records a pair, a few pairs
    skipped) or, with ``issuers_per_acquirer``, for that many others (one record a pair: the next in the
    list, so every participant is an issuer too, and others drawn with the earlier ones likelier), ~2%
    rejected by their issuer with one of ``reasons``; netted, and settled unless ``settle`` is false.
    Returns the cycle and its records (acquirer, issuer, amount, rejected reason or None)."""
    rng = random.Random(seed)
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=day)
    terms = cycle.agreement.version_on(day)
    items, rows = [], []
    count = len(participants)
    weights = [1 / (1 + i) ** 0.8 for i in range(count)]
    for a, acquirer in enumerate(participants):
        if issuers_per_acquirer is None:
            pairs = [(issuer, rng.randint(1, 3)) for issuer in participants if issuer != acquirer]
            pairs = [pair for pair in pairs if rng.random() >= 0.05]
        else:
            # The next participant (so every one is an issuer too), then others drawn as traffic goes: the
            # larger cities (earlier in the list) issue more of the cards roaming anywhere.
            drawn = rng.choices(participants, weights=weights, k=issuers_per_acquirer * 2)
            chosen = dict.fromkeys([participants[(a + 1) % count], *drawn])
            chosen.pop(acquirer, None)
            pairs = [(issuer, 1) for issuer in list(chosen)[:issuers_per_acquirer]]
        for issuer, times in pairs:
            for _ in range(times):
                amount = rng.choice((100, 150, 200, 300, 1250))
                rejected = rng.choice(reasons) if rng.random() < 0.02 else None
                n = len(rows)
                items.append((acquirer, issuer, amount, rejected))
                rows.append(
                    [
                        f"{acquirer}-{day:%m%d}{n}",
                        cycle.pk,
                        "tap",
                        "m",
                        acquirer,
                        issuer,
                        "3301000000000000000",
                        n,
                        amount,
                        fee_fen(amount, terms.issuer_fee_bps),
                        fee_fen(amount, terms.network_fee_bps),
                        at(day, 9).isoformat(),
                        at(day, 10).isoformat(),
                        json.dumps({}),
                    ]
                )
    records_insert(rows=rows)
    for reason in reasons:
        rejected_ids = [row[0] for row, item in zip(rows, items, strict=True) if item[3] == reason]
        cycle.records.filter(record_id__in=rejected_ids).update(status="rejected", reason=reason)
    # Validated (validation itself is per issuer, exercised elsewhere): the rest read valid.
    ClearingCycle.objects.filter(pk=cycle.pk).update(state=CycleState.VALIDATED)
    now = at(day + dt.timedelta(days=1), 6)
    cycle = cycle_net(cycle=cycle, now=now)
    if settle:
        cycle = cycle_settle(cycle=cycle, now=now)
    return cycle, items

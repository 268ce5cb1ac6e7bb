"""The national demo's network (``citycard demo --national``; 交通联合, docs/clearing.md): the country's
city tenants in the national roaming network ``tunion``, a day of roaming between them and its clearing
cycle, run once.

``national_network_build`` makes the cities members and sets the network's transit agreement;
``national_day_clear`` gives every issuer a few active cards, has every acquirer seal its share of the
day's records (real TACs under each issuer's card key, 2% with a broken TAC, which validation rejects)
into its outbox as signed envelopes, collects every outbox and runs the cycle's steps (close, validate,
net, settle). A cycle already settled is only reported, so running the demo again changes nothing.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingCycle, CycleState
from citycard.interop.services import agreements, cycles
from citycard.interop.services.messages import outbox_collect
from citycard.platform import services as platform_services
from citycard.platform.keys import tenant_card_tac_master
from citycard.platform.models import Tenant, TenantKind, TenantStatus
from citycard.tenants.cards.services import schemes_seed
from citycard.tenants.exchange.services import outbox_put_clearing_records
from citycard.tenants.terminals.simulate import card_number
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.crypto import Algorithm, diversify, tac_compute
from citycard.terminal_kit.money import yuan

NATIONAL_NETWORK = "tunion"
JOINED_ON = dt.date(2020, 1, 1)
ENVELOPE = 5000  # records per signed envelope, as ingestion seals them
BROKEN_TAC_SHARE = 0.02
FARES_FEN = (100, 150, 200, 200, 300, 400)


@dataclass
class NationalDay:
    cycle: ClearingCycle
    members: list[str]
    records: int  # sealed by this run (0: the cycle was already settled)


def national_members(*, cities: int) -> list[Tenant]:
    """The first ``cities`` mainland city tenants by division code (Hong Kong and Macao clear apart)."""
    return list(
        Tenant.objects.filter(
            kind=TenantKind.CITY, status=TenantStatus.ACTIVE, division_code__regex=r"^[1-6]"
        ).order_by("division_code")[:cities]
    )


def national_network_build(*, cities: int, actor: str = "demo") -> list[Tenant]:
    """The ``cities`` first city tenants as members of ``tunion`` and its transit agreement (idempotent)."""
    members = national_members(cities=cities)
    for tenant in members:
        platform_services.network_join(
            network_code=NATIONAL_NETWORK, tenant_code=tenant.code, joined_on=JOINED_ON, actor=actor
        )
    agreements.agreement_set(
        network_code=NATIONAL_NETWORK,
        service="transit",
        valid_from=JOINED_ON,
        issuer_fee_bps=50,
        network_fee_bps=10,
        cut_off=dt.time(4, 0),
        actor=actor,
    )
    return members


def _cards_seed(*, tenant: Tenant, cards: int) -> list[str]:
    """``cards`` active transit cards of the issuer, written straight into its card table (demo data)."""
    numbers = [card_number(tenant.division_code, n) for n in range(1, cards + 1)]
    with tenant_context(tenant):
        schemes_seed(actor="demo")
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO cards_card (card_no, scheme_id, is_main, state, applied_at, activated_at, fee_fen,"
                " source) SELECT n, (SELECT id FROM cards_cardscheme WHERE code = '03'), false, 'active',"
                " now(), now(), 0, 'demo' FROM unnest(%s::text[]) AS n ON CONFLICT DO NOTHING",
                [numbers],
            )
    return numbers


def national_day_clear(
    *,
    members: list[Tenant],
    day: dt.date,
    records: int,
    cards: int = 50,
    seed: int = 23,
    progress: Callable[[str], None] | None = None,
    actor: str = "demo",
) -> NationalDay:
    """A day of roaming between ``members`` (``records`` in all, every acquirer's cards of every other
    issuer), sealed, collected and cleared to settlement; a settled cycle of ``day`` is only returned."""
    say = progress or (lambda _text: None)
    codes = [t.code for t in members]
    existing = ClearingCycle.objects.filter(
        agreement__network__code=NATIONAL_NETWORK, agreement__service="transit", business_date=day
    ).first()
    if existing is not None and existing.state == CycleState.SETTLED:
        return NationalDay(cycle=existing, members=codes, records=0)
    if existing is None:
        numbers = {t.code: _cards_seed(tenant=t, cards=cards) for t in members}
        connection.set_schema_to_public()
        say(gettext("%(issuers)s issuers, %(cards)s cards each") % {"issuers": len(members), "cards": cards})
        _records_seal(members=members, numbers=numbers, day=day, records=records, seed=seed, actor=actor)
        say(
            gettext("%(records)s records sealed into %(outboxes)s outboxes")
            % {"records": f"{records:,}", "outboxes": len(members)}
        )
    now = timezone.now()
    for tenant in members:
        outbox_collect(tenant=tenant, now=now)
    say(gettext("outboxes collected"))
    cycle = cycles.cycle_get_or_create(network_code=NATIONAL_NETWORK, service="transit", business_date=day)
    cycle = cycles.cycle_run(cycle=cycle, now=now, actor=actor)
    return NationalDay(cycle=cycle, members=codes, records=records if existing is None else 0)


def _records_seal(
    *, members: list[Tenant], numbers: dict[str, list[str]], day: dt.date, records: int, seed: int, actor: str
) -> None:
    masters = {t.code: tenant_card_tac_master(tenant=t) for t in members}
    keys = {n: diversify(masters[code], n, Algorithm.SM4) for code, ns in numbers.items() for n in ns}
    rng = random.Random(seed)
    per_acquirer = max(records // len(members), 1)
    counters: dict[str, int] = {}
    seq = 0
    start = dt.datetime.combine(day, dt.time(6, 0), tzinfo=BEIJING)
    for acquirer in members:
        others = [t for t in members if t.pk != acquirer.pk]
        terminal_no = f"{acquirer.division_code}000001"
        batch = []
        for _ in range(per_acquirer):
            issuer = rng.choice(others)
            card = rng.choice(numbers[issuer.code])
            counters[card] = counters.get(card, 0) + 1
            seq += 1
            when = start + dt.timedelta(seconds=rng.randrange(72_000))
            amount = rng.choice(FARES_FEN)
            tac = tac_compute(
                keys[card],
                amount=amount,
                terminal_id=bytes.fromhex(terminal_no),
                terminal_seq=seq,
                date=bytes.fromhex(when.strftime("%Y%m%d")),
                time=bytes.fromhex(when.strftime("%H%M%S")),
                alg=Algorithm.SM4,
            ).hex()
            if rng.random() < BROKEN_TAC_SHARE:
                tac = "00000000"
            batch.append(
                {
                    "acquirer": acquirer.code,
                    "issuer": issuer.code,
                    "network": NATIONAL_NETWORK,
                    "source_tx_id": seq,
                    "batch_id": f"national-{day:%Y%m%d}",
                    "terminal_id": "BUS-1",
                    "terminal_seq": seq,
                    "card_no": card,
                    "card_counter": counters[card],
                    "amount_fen": amount,
                    "tapped_at": when.isoformat(),
                    "service": "bus",
                    "tac": tac,
                    "terminal_no": terminal_no,
                    "algorithm": 4,
                }
            )
        with tenant_context(acquirer), transaction.atomic():
            for i in range(0, len(batch), ENVELOPE):
                outbox_put_clearing_records(batch[i : i + ENVELOPE], actor)
    connection.set_schema_to_public()


def national_step(ctx, *, cities: int, records: int, cards: int) -> None:
    """``citycard demo --national``'s clearing (the platform's ``demo.demo_national_run`` calls it through
    the app config's ``national_step``): the network, the day two days ago cleared, the cycle reported."""
    day = timezone.localdate(timezone=BEIJING) - dt.timedelta(days=2)
    members = national_network_build(cities=cities)
    ctx.console.print(
        gettext("%(network)s (national transit union): %(count)s member cities")
        % {"network": NATIONAL_NETWORK, "count": len(members)}
    )
    result = national_day_clear(
        members=members, day=day, records=records, cards=cards, progress=ctx.console.print
    )
    ctx.facts["national_cycle"] = result.cycle
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), coalesce(sum(net_fen), 0) FROM interop_netposition WHERE cycle_id = %s",
            [result.cycle.pk],
        )
        positions, net_sum = cur.fetchone()
        cur.execute("SELECT count(*) FROM interop_bilateralposition WHERE cycle_id = %s", [result.cycle.pk])
        (cells,) = cur.fetchone()
    ctx.console.print(
        gettext(
            "cycle %(cycle)s: %(state)s, %(cells)s matrix cells, %(positions)s net positions, Σ net = %(sum)s"
        )
        % {
            "cycle": result.cycle.label,
            "state": f"{result.cycle.get_state_display()} ({result.cycle.state})",
            "cells": f"{cells:,}",
            "positions": positions,
            "sum": yuan(net_sum),
        }
    )
    ctx.console.print(
        gettext("Cycle page: %(url)s   (sign in as %(user)s)")
        % {"url": ctx.url(None, f"/console/cycles/{NATIONAL_NETWORK}/transit/{day}/"), "user": "clearing"},
        soft_wrap=True,
    )

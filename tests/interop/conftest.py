"""Interop tests: roaming records with real TACs (under each issuer's card key from the vault), put in the acquirer's
outbox through citycard.tenants.exchange, collected and cleared. Every date and time is explicit."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import replace

import pytest
from django_tenants.utils import tenant_context

from citycard.terminal_kit.card.crypto import Algorithm, diversify, tac_compute

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
DAY = dt.date(2026, 11, 21)  # the business date most tests clear
_tx_ids = itertools.count(1_000_000)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


def card_no(division: str, serial: int) -> str:
    from citycard.tenants.terminals.simulate import card_number

    return card_number(division, serial)


def tac_for(card: str, *, amount: int, terminal_no: str, seq: int, when: dt.datetime) -> str:
    from citycard.platform.keys import tenant_card_tac_master
    from citycard.platform.selectors import tenant_by_division

    local = when.astimezone(SHANGHAI)
    issuer = tenant_by_division(card[:6])
    key = diversify(tenant_card_tac_master(tenant=issuer), card, Algorithm.SM4)
    return tac_compute(
        key,
        amount=amount,
        terminal_id=bytes.fromhex(terminal_no),
        terminal_seq=seq,
        date=bytes.fromhex(local.strftime("%Y%m%d")),
        time=bytes.fromhex(local.strftime("%H%M%S")),
        alg=Algorithm.SM4,
    ).hex()


def record(
    *,
    acquirer: str,
    issuer: str,
    issuer_division: str,
    serial: int = 1,
    counter: int = 1,
    amount: int = 200,
    when: dt.datetime | None = None,
    network: str = "yrd",
    bad_tac: bool = False,
    seq: int | None = None,
) -> dict:
    when = when or at(DAY, 9)
    tx = next(_tx_ids)
    seq = seq if seq is not None else tx % 100000
    card = card_no(issuer_division, serial)
    terminal_no = "330100000001"
    tac = tac_for(card, amount=amount, terminal_no=terminal_no, seq=seq, when=when)
    if bad_tac:
        tac = f"{(int(tac, 16) ^ 1):08x}"
    return {
        "acquirer": acquirer,
        "issuer": issuer,
        "network": network,
        "source_tx_id": tx,
        "batch_id": "B-1",
        "terminal_id": "T-1",
        "terminal_seq": seq,
        "card_no": card,
        "card_counter": counter,
        "amount_fen": amount,
        "balance_before_fen": 10_000,
        "balance_after_fen": 10_000 - amount,
        "tapped_at": when.isoformat(),
        "service": "bus",
        "route": "1",
        "tac": tac,
        "kind": "purchase",
        "status": "complete",
        "card_scheme": "01",
        "fare_rule_id": "",
        "terminal_no": terminal_no,
        "algorithm": 4,
    }


@pytest.fixture
def yrd_transit(db):
    from citycard.interop.services.agreements import agreement_set

    return agreement_set(
        network_code="yrd",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        issuer_fee_bps=50,
        network_fee_bps=10,
        cut_off=dt.time(4, 0),
        dispute_window_days=30,
        actor="test",
    )


def cards_known(issuer, card_nos) -> None:
    """Active cards of the issuer's transit-card scheme (城市通卡, 03), as its card domain holds them, all
    registered to one cardholder (so that a test may report one lost: an anonymous card cannot be)."""
    from citycard.tenants.cards.models import Card, CardScheme
    from citycard.tenants.cards.pii import id_number_build
    from citycard.tenants.cards.selectors import cardholder_by_id_number
    from citycard.tenants.cards.services import cardholder_register, schemes_seed

    with tenant_context(issuer):
        if not CardScheme.objects.filter(code="03").exists():
            schemes_seed(actor="test")
        scheme = CardScheme.objects.get(code="03")
        id_number = id_number_build(division=issuer.division_code, birth_date=dt.date(1980, 5, 1), sequence=7)
        holder = cardholder_by_id_number(id_number=id_number) or cardholder_register(
            name="持卡人", id_number=id_number, actor="test"
        )
        for number in card_nos:
            Card.objects.get_or_create(
                card_no=number,
                defaults={
                    "scheme": scheme,
                    "cardholder": holder,
                    "state": "active",
                    "applied_at": at(dt.date(2025, 1, 1), 9),
                    "activated_at": at(dt.date(2025, 1, 2), 9),
                },
            )


@pytest.fixture
def send(tenant):
    """``send('jiaxing', [records])``: put records in a tenant's outbox (as the ingestion sink does); the
    issuers know the cards unless ``known=False``."""
    from citycard.tenants.exchange.services import outbox_put_clearing_records

    def _send(code: str, records: list[dict], now: dt.datetime | None = None, known: bool = True):
        if known:
            by_issuer: dict[str, list[str]] = {}
            for r in records:
                by_issuer.setdefault(r["issuer"], []).append(r["card_no"])
            for issuer, numbers in by_issuer.items():
                cards_known(tenant(issuer), numbers)
        with tenant_context(tenant(code)):
            return outbox_put_clearing_records(records, "test", now=now or at(DAY, 11))

    return _send


@pytest.fixture
def collect(tenant):
    from citycard.interop.services.messages import outbox_collect

    def _collect(code: str, now: dt.datetime | None = None):
        return outbox_collect(tenant=tenant(code), now=now or at(DAY, 12))

    return _collect


def venue(
    department: str,
    point: str | None,
    *,
    name: str,
    actor: str = "t",
    point_name: str = "公园",
    address: str = "a",
    hours: str = "6-22",
    purpose: str = "核验",
) -> None:
    """A culture-and-tourism department; with ``point``, one entry service point of it and a data grant
    for the cardholder's name for ``purpose``, in force since 2020. In the schema of the tenant in context."""
    from citycard.tenants.departments import services as d

    d.department_create(code=department, kind="culture_tourism", name=name, actor=actor)
    if point:
        d.service_point_create(
            department=department,
            code=point,
            name=point_name,
            address=address,
            hours=hours,
            services=["entry"],
            actor=actor,
        )
        d.data_grant_create(
            department=department,
            fields=["name"],
            purpose=purpose,
            valid_from=dt.date(2020, 1, 1),
            actor="t",
        )


def type_approved(*, role: str = "city_admin", approver: str = "city-admin", **kind):
    """An entitlement type defined (``kind``: entitlement_type_create's arguments but the role) and approved
    by ``approver`` in ``role``."""
    from citycard.tenants.entitlements import services as s

    created = s.entitlement_type_create(role=role, **kind)
    s.entitlement_type_approve(code=kind["code"], actor=approver, role=role)
    return created


def elderly_free_entry(point: str | None, prefix: str) -> None:
    """A parks department with elderly free entry (one a day, granted automatically), approved; with a
    service point and a data grant for names when ``point`` is given."""
    venue(f"{prefix}-parks", point, name=f"{prefix} 园文局")
    type_approved(
        code="elderly-free-entry",
        name="老年人免费游园",
        department=f"{prefix}-parks",
        categories=["elderly"],
        service_points=[point] if point else [],
        auto_grant=True,
        quota_period="day",
        quota=1,
        actor="t",
    )


def yrd_recognises(types: tuple[str, ...] = ("elderly-free-entry",)) -> None:
    """The Yangtze Delta network recognises ``types`` of its members (权益互认), since 2026-01-01; none: it
    withdraws every recognition."""
    from citycard.interop.entitlements import entitlement_recognition_set

    entitlement_recognition_set(
        network_code="yrd", type_codes=list(types), valid_from=dt.date(2026, 1, 1), actor="yrd"
    )


@pytest.fixture
def visitor(tenant):
    """A Jiaxing elderly cardholder (free park entry at home) and a Hangzhou park gate."""
    from citycard.tenants.cards.services import card_issue_now, cardholder_register, schemes_seed
    from tests.tenants.conftest import new_id

    with tenant_context(tenant("jiaxing")):
        schemes_seed(actor="t")
        elderly_free_entry(None, "jx")
        holder = cardholder_register(
            name="沈阿婆",
            id_number=new_id("330402", dt.date(1948, 2, 2)),
            local_hukou=True,
            categories=[{"code": "elderly", "valid_from": dt.date(2008, 3, 1)}],
            actor="t",
        )
        card = card_issue_now(scheme_code="01", cardholder_id=holder.pk, actor="t")
    with tenant_context(tenant("hangzhou")):
        schemes_seed(actor="t")
        elderly_free_entry("hz-west-lake", "hz")
    return holder, card


@pytest.fixture
def recognised(visitor):
    """The visitor (``visitor``), whose elderly free entry the Yangtze Delta network recognises."""
    yrd_recognises()
    return visitor


def synced_list(host, held=None):
    """The host city's signed offline list as its gates hold it: ``held`` brought up to date (a delta), or
    the whole list."""
    from citycard.platform.keys import tenant_public_keys
    from citycard.tenants.entitlements.selectors import entitlement_list_document
    from citycard.terminal_kit.entitlements import EntitlementList

    with tenant_context(host):
        return (held or EntitlementList()).apply(
            entitlement_list_document(since=held.version if held else None),
            keys=tenant_public_keys(tenant=host),
        )


def park_gate(tmp_path, transport, jiaxing, hangzhou, held, at: dt.datetime):
    """Hangzhou's park gate, offline, at ``at``: its validator over ``transport``, and a code scanner
    trusting both cities' keys."""
    from citycard.platform.keys import tenant_public_keys
    from citycard.tenants.entitlements.acceptance import code_issuer
    from citycard.terminal_kit.ecode import EcodeVerifier
    from citycard.terminal_kit.entitlements import Gate, UseQueue
    from tests.terminal_kit import kit

    validator = kit.validator(transport, tmp_path, fare=0, service="park", route="hz-west-lake", at=at)
    issuers = []
    for city in (hangzhou, jiaxing):
        with tenant_context(city):
            issuers.append(replace(code_issuer(city), keys=tenant_public_keys(tenant=city)))
    codes = EcodeVerifier(issuers=issuers, store=validator.store, clock=lambda: at.timestamp())
    return Gate("hz-west-lake", held, UseQueue(tmp_path / "uses.sqlite"), validator, codes, lambda: at)

"""The ingestion checks wired to the tenant's cards and accounts: hotlisted taps and the e-purse shadow."""

from __future__ import annotations

import datetime as dt

import pytest
from django_tenants.utils import tenant_context

from citycard.tenants.accounts.models import PurseShadow
from citycard.tenants.cards import services as cards
from citycard.tenants.cards.pii import id_number_build
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import ReviewFlag
from citycard.tenants.terminals.simulate import SimCard, SimTerminal

pytestmark = pytest.mark.django_db


@pytest.fixture
def hz(tenant, register):
    hangzhou = tenant("hangzhou")
    sim = SimTerminal("HZ-BUS-0100", "hangzhou", route="7")
    with tenant_context(hangzhou):
        register(sim)
        cards.schemes_seed(actor="t")
        issued = []
        for n in range(3):
            holder = cards.cardholder_register(
                name=f"持卡人{n}",
                id_number=id_number_build(division="330106", birth_date=dt.date(1970, 1, 1), sequence=n),
                local_hukou=True,
                actor="t",
            )
            issued.append(cards.card_issue_now(scheme_code="01", cardholder_id=holder.pk, actor="t").card_no)
    return hangzhou, sim, issued


def upload(hangzhou, sim, taps, now):
    with tenant_context(hangzhou):
        batch_ingest(tenant=hangzhou, body=sim.sign(sim.payload(taps, created_at=now)))
        return {(f.card_no, f.code): f.detail for f in ReviewFlag.objects.all()}


def test_taps_after_the_grace_period_are_flagged_hotlisted(hz, now, settings):
    settings.HOTLIST_GRACE_MINUTES = 10
    hangzhou, sim, (lost_long, lost_just_now, fine) = hz
    with tenant_context(hangzhou):
        cards.card_report_lost(card_no=lost_long, actor="t", at=now - dt.timedelta(hours=2))
        cards.card_report_lost(card_no=lost_just_now, actor="t", at=now - dt.timedelta(minutes=12))
    at = now - dt.timedelta(minutes=5)
    taps = [sim.tap(SimCard(n), at=at) for n in (lost_long, lost_just_now, fine)]
    flags = upload(hangzhou, sim, taps, now)
    hot = {card for card, code in flags if code == "hotlisted"}
    assert hot == {lost_long}
    assert flags[(lost_long, "hotlisted")]["reason"] == "lost"


def test_a_tap_before_the_loss_is_not_flagged(hz, now):
    hangzhou, sim, (card_no, _, _) = hz
    with tenant_context(hangzhou):
        cards.card_report_lost(card_no=card_no, actor="t", at=now - dt.timedelta(minutes=1))
    flags = upload(hangzhou, sim, [sim.tap(SimCard(card_no), at=now - dt.timedelta(hours=3))], now)
    assert not [k for k in flags if k[1] == "hotlisted"]


def test_shadow_follows_the_card_and_flags_divergence(hz, now):
    hangzhou, sim, (card_no, _, _) = hz
    card = SimCard(card_no, balance_fen=5000)
    start = now - dt.timedelta(minutes=30)
    taps = [sim.tap(card, at=start + dt.timedelta(minutes=i)) for i in range(3)]
    assert upload(hangzhou, sim, taps, now) == {}
    with tenant_context(hangzhou):
        shadow = PurseShadow.objects.get(card_no=card_no)
        assert (shadow.balance_fen, shadow.last_counter) == (4400, 3)
    card.balance_fen += 1000  # loaded somewhere the back office did not see
    flags = upload(hangzhou, sim, [sim.tap(card, at=start + dt.timedelta(minutes=10))], now)
    assert flags[(card_no, "shadow_divergence")] == {"shadow_fen": 4400, "balance_before_fen": 5400}
    with tenant_context(hangzhou):
        assert PurseShadow.objects.get(card_no=card_no).balance_fen == 5200

"""Transit cycles: assignment by acceptance time, transitions and refused ones, late records, empty
cycles, issuer validation with rejections returned to the acquirer."""

from __future__ import annotations

import datetime as dt

import pytest
from django_tenants.utils import tenant_context

from citycard.interop import selectors
from citycard.interop.models import ClearingCycle, ClearingRecord, CycleState
from citycard.interop.services.cycles import (
    cycle_close,
    cycle_get_or_create,
    cycle_net,
    cycle_run,
    cycle_settle,
    cycle_validate,
)
from citycard.interop.terms import agreement_business_date
from citycard.platform.errors import Conflict
from citycard.tenants.exchange.selectors import inbox_exceptions

from .conftest import DAY, at, record

pytestmark = pytest.mark.django_db
NEXT = DAY + dt.timedelta(days=1)


def _read_statuses(cycle):
    return list(
        ClearingRecord.objects.filter(cycle=cycle).with_status().values_list("current_status", flat=True)
    )


def _cycle(day=DAY):
    return cycle_get_or_create(network_code="yrd", service="transit", business_date=day)


def test_business_date_follows_the_cut_off_in_shanghai(yrd_transit):
    assert agreement_business_date(agreement=yrd_transit, at=at(DAY, 4)) == DAY
    assert agreement_business_date(agreement=yrd_transit, at=at(DAY, 23, 59)) == DAY
    assert (
        agreement_business_date(agreement=yrd_transit, at=at(NEXT, 3, 59)) == DAY
    )  # the night bus belongs to the day before
    assert agreement_business_date(agreement=yrd_transit, at=at(NEXT, 4)) == NEXT
    utc = dt.datetime(2026, 11, 21, 19, 30, tzinfo=dt.UTC)  # 03:30 on the 22nd in Shanghai
    assert agreement_business_date(agreement=yrd_transit, at=utc) == DAY
    cycle = _cycle()
    assert cycle.opens_at == at(DAY, 4) and cycle.cut_off_at == at(NEXT, 4)


def test_transitions_in_order_and_the_refused_ones(yrd_transit, send, collect):
    send("jiaxing", [record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100")])
    collect("jiaxing")
    cycle = _cycle()
    later = at(NEXT, 5)
    with pytest.raises(Conflict, match="此前不能截止"):
        cycle_close(cycle=cycle, now=at(NEXT, 3, 59))
    for step in (cycle_validate, cycle_net, cycle_settle):
        with pytest.raises(Conflict) as info:
            step(cycle=cycle, now=later)
        assert info.value.code == "cycle_state"
    assert cycle_close(cycle=cycle, now=later).state == CycleState.CLOSED
    with pytest.raises(Conflict, match="需要其状态为 validated"):
        cycle_net(cycle=cycle, now=later)
    assert _read_statuses(cycle) == ["pending"]  # closed, not validated yet
    assert cycle_validate(cycle=cycle, now=later).state == CycleState.VALIDATED
    assert _read_statuses(cycle) == ["valid"]  # stored pending, read valid: validation wrote no row
    assert list(ClearingRecord.objects.filter(cycle=cycle).values_list("status", flat=True)) == ["pending"]
    assert selectors.cycle_summary(cycle=_cycle())["records"] == {"valid": {"records": 1, "amount_fen": 200}}
    with pytest.raises(Conflict, match="需要其状态为 netted"):
        cycle_settle(cycle=cycle, now=later)
    assert cycle_net(cycle=cycle, now=later).state == CycleState.NETTED
    assert cycle_settle(cycle=cycle, now=later).state == CycleState.SETTLED
    # Every step again: nothing changes, nothing is posted twice; a closed cycle never reopens.
    for step in (cycle_close, cycle_validate, cycle_net, cycle_settle):
        assert step(cycle=cycle, now=later).state == CycleState.SETTLED
    assert cycle.journals.count() == 2
    assert ClearingCycle.objects.get(pk=cycle.pk).state == CycleState.SETTLED


def test_late_records_join_the_next_open_cycle(yrd_transit, send, collect):
    send("jiaxing", [record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=1)])
    collect("jiaxing")
    cycle_close(cycle=_cycle(), now=at(NEXT, 4, 30))
    # A bus that was offline uploads a tap of DAY after DAY's cycle closed.
    late = record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=2, when=at(DAY, 22))
    send("jiaxing", [late], now=at(NEXT, 9))
    collect("jiaxing", now=at(NEXT, 10))
    found = ClearingRecord.objects.get(record_id=f"jiaxing-{late['source_tx_id']}")
    assert found.cycle.business_date == NEXT and found.accepted_at == at(DAY, 22)
    assert _cycle().records.count() == 1


def test_empty_cycle_settles(yrd_transit):
    cycle = cycle_run(cycle=_cycle(dt.date(2026, 11, 20)), now=at(DAY, 5))
    assert cycle.state == CycleState.SETTLED
    assert cycle.positions.count() == 0 and cycle.instructions.count() == 0
    assert cycle.reconciliations.count() == 0


def test_zero_value_cycle_settles(yrd_transit, send, collect):
    send("jiaxing", [record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", amount=0)])
    collect("jiaxing")
    cycle = cycle_run(cycle=_cycle(), now=at(NEXT, 5))
    assert cycle.state == CycleState.SETTLED
    assert sorted(cycle.positions.values_list("participant", "net_fen")) == [("hangzhou", 0), ("jiaxing", 0)]
    assert cycle.instructions.count() == 0


def _statuses(cycle) -> dict[str, tuple[str, str]]:
    """record id -> (status, reason) of the cycle's records."""
    return {
        r.record_id: (r.current_status, r.reason)
        for r in ClearingRecord.objects.filter(cycle=cycle).with_status()
    }


def _rid(record: dict) -> str:
    """The clearing record id Jiaxing's record gets."""
    return f"jiaxing-{record['source_tx_id']}"


def test_issuer_rejections_go_back_to_the_acquirer_with_reasons(yrd_transit, send, collect, tenant):
    from citycard.tenants.cards.services import card_report_lost

    def rec(serial, **kw):
        return record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=serial, **kw)

    good = rec(1, counter=5)
    bad_tac = rec(2, bad_tac=True)
    replay = dict(good, source_tx_id=good["source_tx_id"] + 777_000)  # same card, same counter again
    not_ours = record(acquirer="jiaxing", issuer="hangzhou", issuer_division="310000", serial=3)
    no_sam = rec(4)
    no_sam["terminal_no"] = ""
    lost_long_ago = rec(5)  # hotlisted at 07:00, tapped at 09:00: beyond the 60-minute grace period
    lost_just_now = rec(6)  # hotlisted at 08:30, tapped at 09:00: inside the grace period, valid
    unknown = rec(7)
    send("jiaxing", [good, bad_tac, replay, not_ours, no_sam, lost_long_ago, lost_just_now])
    send("jiaxing", [unknown], known=False)
    with tenant_context(tenant("hangzhou")):
        card_report_lost(card_no=lost_long_ago["card_no"], actor="test", at=at(DAY, 7))
        card_report_lost(card_no=lost_just_now["card_no"], actor="test", at=at(DAY, 8, 30))
    collect("jiaxing")
    cycle = cycle_run(cycle=_cycle(), now=at(NEXT, 5))
    status = _statuses(cycle)
    # Validation wrote only the rejections: the valid records are still stored pending.
    assert {r.status for r in ClearingRecord.objects.filter(cycle=cycle)} == {"pending", "rejected"}
    assert status == {
        _rid(good): ("valid", ""),
        _rid(bad_tac): ("rejected", "tac_invalid"),
        _rid(replay): ("rejected", "counter_replayed"),
        _rid(not_ours): ("rejected", "not_our_card"),
        _rid(no_sam): ("rejected", "tac_invalid"),
        _rid(lost_long_ago): ("rejected", "hotlisted"),
        _rid(lost_just_now): ("valid", ""),
        _rid(unknown): ("rejected", "card_unknown"),
    }
    assert cycle.validation_checks == {"hangzhou": ["issuer", "card_known", "hotlist", "tac", "counter"]}
    with tenant_context(tenant("jiaxing")):
        exceptions = {e["record_id"]: e["reason"] for e in inbox_exceptions()}
    assert exceptions == {k: v[1] for k, v in status.items() if v[0] == "rejected"}
    # The acquirer bears rejected records: only the two valid ones are netted (200 − 1 fee each).
    assert sorted(cycle.positions.values_list("participant", "net_fen")) == [
        ("hangzhou", -398),
        ("jiaxing", 398),
    ]


def test_the_issuer_keeps_what_it_rejected_once_per_record_with_its_latest_answer(
    yrd_transit, send, collect, tenant
):
    """The issuer's own record of its rejections (``exchange.IssuerRejection``, in its schema): asked twice
    about the same records it keeps one row each; a record it accepts when asked again loses its row."""
    from citycard.interop.services.validation import issuer_validate
    from citycard.tenants.exchange.models import IssuerRejection

    from .conftest import cards_known

    def rec(serial, **kw):
        return record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=serial, **kw)

    good, bad_tac, unknown = rec(1), rec(2, bad_tac=True, amount=350), rec(3, amount=420)
    send("jiaxing", [good, bad_tac])
    send("jiaxing", [unknown], known=False)
    collect("jiaxing")
    cycle = cycle_close(cycle=_cycle(), now=at(NEXT, 5))

    def kept():
        with tenant_context(tenant("hangzhou")):
            return sorted(
                IssuerRejection.objects.values_list(
                    "cycle", "record_id", "acquirer", "card_no", "amount_fen", "reason"
                )
            )

    label = cycle.label
    expected = [
        (label, _rid(bad_tac), "jiaxing", bad_tac["card_no"], 350, "tac_invalid"),
        (label, _rid(unknown), "jiaxing", unknown["card_no"], 420, "card_unknown"),
    ]
    for _ in range(2):  # asked again (a retried task, a resumed step): the same rows, none twice
        answer = issuer_validate(cycle_id=cycle.pk, issuer_code="hangzhou", now=at(NEXT, 5))
        assert {r["record_id"] for r in answer["rejected"]} == {_rid(bad_tac), _rid(unknown)}
        assert kept() == expected
    # The card became known: asked again, the issuer accepts that record and no longer lists it.
    cards_known(tenant("hangzhou"), [unknown["card_no"]])
    issuer_validate(cycle_id=cycle.pk, issuer_code="hangzhou", now=at(NEXT, 5, 30))
    assert kept() == expected[:1]
    # The step itself asks once more and applies the answer: still one row.
    assert cycle_validate(cycle=cycle, now=at(NEXT, 6)).state == CycleState.VALIDATED
    assert kept() == expected[:1]
    with tenant_context(tenant("jiaxing")):  # the acquirer keeps no issuer answer
        assert not IssuerRejection.objects.exists()


def test_a_counter_cleared_in_an_earlier_cycle_is_a_replay_later(yrd_transit, send, collect):
    first = record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=7, counter=3)
    send("jiaxing", [first])
    collect("jiaxing")
    cycle_run(cycle=_cycle(), now=at(NEXT, 5))
    again = dict(first, source_tx_id=first["source_tx_id"] + 1)  # resent by another route: a late record
    send("jiaxing", [again], now=at(NEXT, 10))
    collect("jiaxing", now=at(NEXT, 11))
    cycle = cycle_run(cycle=_cycle(NEXT), now=at(NEXT + dt.timedelta(days=1), 5))
    assert cycle.records.get().reason == "counter_replayed"


def test_issuer_validation_takes_the_hotlist_as_it_stood_at_the_tap(yrd_transit, send, collect, tenant):
    """The one hotlist rule (terminal_kit.hotlist.hotlisted) with the agreement's 60 minutes: a tap exactly
    at the end of the grace is hotlisted; a card found again after the tap was still hotlisted at it."""
    from citycard.tenants.cards.services import card_report_lost, card_unfreeze

    def rec(serial):
        return record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=serial)

    at_the_edge = rec(11)  # hotlisted at 08:00, tapped at 09:00: exactly the grace
    found_later = rec(12)  # hotlisted at 07:00, tapped at 09:00, off the hotlist at 10:00
    found_before = rec(13)  # hotlisted at 07:00, off the hotlist at 08:59, tapped at 09:00
    send("jiaxing", [at_the_edge, found_later, found_before])
    with tenant_context(tenant("hangzhou")):
        card_report_lost(card_no=at_the_edge["card_no"], actor="test", at=at(DAY, 8))
        card_report_lost(card_no=found_later["card_no"], actor="test", at=at(DAY, 7))
        card_unfreeze(card_no=found_later["card_no"], actor="test", at=at(DAY, 10))
        card_report_lost(card_no=found_before["card_no"], actor="test", at=at(DAY, 7))
        card_unfreeze(card_no=found_before["card_no"], actor="test", at=at(DAY, 8, 59))
    collect("jiaxing")
    cycle = cycle_run(cycle=_cycle(), now=at(NEXT, 5))
    status = _statuses(cycle)
    assert status == {
        _rid(at_the_edge): ("rejected", "hotlisted"),
        _rid(found_later): ("rejected", "hotlisted"),
        _rid(found_before): ("valid", ""),
    }

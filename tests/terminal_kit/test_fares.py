"""The fare evaluator: each seed rule, priorities, transfers, caps, quotas, visitor policies."""

from __future__ import annotations

import pytest

from citycard.terminal_kit.fares import FareError
from tests.terminal_kit.fare_docs import card, engine, hangzhou, jiaxing, trip

# 2026-11-23 is a Monday; 10:10 is off-peak, 08:10 is peak.


@pytest.fixture(scope="module")
def hz():
    return engine(hangzhou())


@pytest.fixture(scope="module")
def jx():
    return engine(jiaxing())


def test_hangzhou_card_pays_ninety_percent(hz):
    q = hz.quote(card(), trip("155"))
    assert (q.base_fen, q.fare_fen, q.winner) == (200, 180, "hz-card-91")
    assert q.matched == ("hz-card-91",)
    assert "winner hz-card-91: 180 fen" in q.trace


@pytest.mark.parametrize("scheme", ["01", "02", "03", "04"])
def test_every_card_scheme_gets_the_card_discount(hz, scheme):
    assert hz.quote(card(scheme=scheme), trip("8")).fare_fen == 180


@pytest.mark.parametrize(
    ("route", "fare"), [("1", 100), ("155", 100), ("499", 100), ("315", 180), ("500", 180)]
)
def test_hangzhou_monthly_pass_half_price_on_lines_1_to_499_except_315(hz, route, fare):
    q = hz.quote(card(passes={"monthly"}), trip(route))
    assert q.fare_fen == fare
    if fare == 100:
        assert q.matched == ("hz-monthly-pass", "hz-card-91") and q.winner == "hz-monthly-pass"
    else:
        assert q.matched == ("hz-card-91",)


def test_no_monthly_pass_no_half_price(hz):
    assert hz.quote(card(), trip("1")).fare_fen == 180


@pytest.mark.parametrize(("route", "fare"), [("1", 100), ("3", 100), ("2", 200), ("13", 200)])
def test_jiaxing_lines_1_and_3_half_price(jx, route, fare):
    q = jx.quote(card("330400"), trip(route))
    assert q.fare_fen == fare


def test_elderly_free_off_peak_half_in_peak(hz):
    off = hz.quote(card(categories={"elderly"}), trip("155", "2026-11-23 10:10"))
    assert (off.fare_fen, off.winner) == (0, "hz-elderly-free")
    assert off.matched == ("hz-elderly-free", "hz-elderly-peak", "hz-card-91")
    peak = hz.quote(card(categories={"elderly"}), trip("155", "2026-11-23 08:10"))
    assert (peak.fare_fen, peak.winner) == (100, "hz-elderly-peak")
    weekend = hz.quote(card(categories={"elderly"}), trip("155", "2026-11-22 08:10"))
    assert weekend.fare_fen == 0


def test_disabled_rides_free(hz, jx):
    assert hz.quote(card(categories={"disabled"}), trip("155", "2026-11-23 08:10")).fare_fen == 0
    assert jx.quote(card("330400", categories={"disabled"}), trip("2")).fare_fen == 0


def test_priority_highest_wins_whatever_the_order_in_the_document():
    doc = hangzhou()
    doc["leg_rules"] = list(reversed(doc["leg_rules"]))
    q = engine(doc).quote(card(categories={"disabled", "elderly"}, passes={"monthly"}), trip("1"))
    assert q.winner == "hz-disabled-free"
    assert q.matched[0] == "hz-disabled-free" and set(q.matched) == {
        "hz-disabled-free",
        "hz-elderly-free",
        "hz-elderly-peak",
        "hz-monthly-pass",
        "hz-card-91",
    }


def test_unknown_route_or_service_cannot_be_priced(hz):
    with pytest.raises(FareError, match="no fare product for metro route 99"):
        hz.quote(card(), trip("99", service="metro"))


# --- transfers --------------------------------------------------------------------------------------


def _ride(e, c, trips):
    state, fares = {}, []
    for t in trips:
        q = e.quote(c, t, state)
        state = q.state
        fares.append(q.fare_fen)
    return fares, state


def test_bus_transfer_within_90_minutes_one_yuan_off_once(hz):
    fares, state = _ride(
        hz,
        card(),
        [trip("155", "2026-11-23 10:00"), trip("28", "2026-11-23 11:20"), trip("7", "2026-11-23 11:40")],
    )
    # second leg: 180 - 100; third: already one transfer in this journey -> full card fare
    assert fares == [180, 80, 180]
    assert state["j"]["n"] == 0


def test_transfer_window_expired(hz):
    fares, _ = _ride(hz, card(), [trip("155", "2026-11-23 10:00"), trip("28", "2026-11-23 11:31")])
    assert fares == [180, 180]


def _transfer_doc(**rule):
    doc = hangzhou(caps=[])
    doc["transfer_rules"] = [
        {"id": "t", "from_service": "bus", "to_service": "bus", "within_minutes": 60, **rule}
    ]
    return engine(doc)


def test_transfer_type_0_pays_the_transfer_fee():
    e = _transfer_doc(transfer_type=0, amount_fen=50, max_transfers=2)
    fares, _ = _ride(
        e,
        card(),
        [trip("1", "2026-11-23 10:00"), trip("2", "2026-11-23 10:20"), trip("3", "2026-11-23 10:40")],
    )
    assert fares == [180, 50, 50]


def test_transfer_type_1_adds_the_transfer_amount_to_the_leg():
    e = _transfer_doc(transfer_type=1, amount_fen=-30, max_transfers=-1)
    fares, state = _ride(e, card(), [trip(str(r), f"2026-11-23 10:{10 * r:02d}") for r in range(1, 6)])
    assert fares == [180, 150, 150, 150, 150]  # unlimited transfers
    assert state["j"]["n"] == 4


def test_transfer_type_2_charges_the_journey_fare_once():
    e = _transfer_doc(transfer_type=2, amount_fen=250, max_transfers=2, measure="first_tap")
    fares, _ = _ride(
        e,
        card(),
        [
            trip("1", "2026-11-23 10:00"),
            trip("2", "2026-11-23 10:20"),
            trip("3", "2026-11-23 10:50"),
            trip("4", "2026-11-23 11:05"),  # 65 min after the first tap: a new journey
        ],
    )
    assert fares == [180, 70, 0, 180]


def test_transfer_only_between_the_named_services(hz):
    fares, _ = _ride(
        hz,
        card(),
        [trip("1", "2026-11-23 10:00", "metro"), trip("155", "2026-11-23 10:10")],
    )
    assert fares == [360, 180]  # metro -> bus has no transfer rule
    fares, _ = _ride(hz, card(), [trip("155", "2026-11-23 10:00"), trip("1", "2026-11-23 10:10", "metro")])
    assert fares == [180, 260]


# --- caps and quotas --------------------------------------------------------------------------------


def test_daily_cap(hz):
    trips = [trip(str(100 + i), f"2026-11-23 {6 + 2 * i:02d}:00") for i in range(9)]
    fares, state = _ride(hz, card(), trips)
    assert fares == [180] * 8 + [60]  # 8 x 180 = 1440, 60 left under the 1500 cap
    assert sum(fares) == 1500
    next_day, _ = _ride(hz, card(), [trip("100", "2026-11-24 08:00")])
    q = hz.quote(card(), trip("100", "2026-11-24 08:00"), state)
    assert q.fare_fen == 180 and next_day == [180]


def test_monthly_cap_by_category():
    doc = hangzhou()
    doc["caps"] = [{"id": "student-month", "period": "month", "amount_fen": 300, "categories": ["student"]}]
    e = engine(doc)
    fares, state = _ride(
        e, card(categories={"student"}), [trip("300", f"2026-11-{d:02d} 10:00") for d in (2, 9, 16)]
    )
    assert fares == [180, 120, 0]
    assert e.quote(card(categories={"student"}), trip("300", "2026-12-01 10:00"), state).fare_fen == 180
    assert e.quote(card(), trip("300", "2026-11-30 10:00"), state).fare_fen == 180  # not a student: no cap


def test_elderly_quota_thirty_free_rides_a_month(hz):
    c = card(categories={"elderly"})
    trips = [trip("155", f"2026-11-{1 + i // 4:02d} {10 + 2 * (i % 4):02d}:00") for i in range(31)]
    fares, state = _ride(hz, c, trips)
    assert fares[:30] == [0] * 30
    assert fares[30] == 100  # quota used: the peak-time half price rule is next
    assert state["q"]["hz-elderly-free"][1] == 30
    q = hz.quote(c, trip("155", "2026-12-01 10:00"), state)
    assert q.fare_fen == 0 and q.state["q"]["hz-elderly-free"][1] == 1
    used = hz.quote(c, trip("155", "2026-11-30 10:00"), state)
    assert any("quota hz-elderly-free used up" in line for line in used.trace)


def test_state_is_not_mutated(hz):
    state = {"c": {"hz-day-cap": [0, 0]}}
    before = repr(state)
    hz.quote(card(), trip("1"), state)
    assert repr(state) == before


# --- visitors ---------------------------------------------------------------------------------------


def test_visitor_from_yrd_in_hangzhou_keeps_home_category(hz):
    jiaxing_elderly = card("330400", categories={"elderly"})
    q = hz.quote(jiaxing_elderly, trip("155"))
    assert q.fare_fen == 0 and "policy home_category (network yrd)" in q.trace[0]


def test_visitor_monthly_pass_is_not_honoured(hz):
    assert hz.quote(card("330400", passes={"monthly"}), trip("1")).fare_fen == 180


def test_visitor_from_outside_the_network_gets_no_concession(hz):
    q = hz.quote(card("441900", categories={"elderly"}), trip("155"))
    assert (q.fare_fen, q.matched, q.winner) == (200, (), None)
    assert "no concession" in q.trace[-1]


def test_host_rules_ignore_home_categories(jx):
    hz_elderly = card("330100", categories={"elderly"})
    assert jx.quote(hz_elderly, trip("1")).fare_fen == 100  # line 1 half price, like any card
    assert jx.quote(hz_elderly, trip("2")).fare_fen == 200  # home elderly category not honoured


def test_visitor_policy_per_home_tenant_wins_over_network():
    doc = jiaxing()
    doc["visitor_policy"]["tenants"] = [{"division": "310000", "policy": "no_concession"}]
    e = engine(doc)
    assert e.quote(card("310000"), trip("1")).fare_fen == 200
    assert e.quote(card("330100"), trip("1")).fare_fen == 100


def test_county_card_is_local():
    assert engine(hangzhou()).quote(card("330122", passes={"monthly"}), trip("1")).fare_fen == 100


def test_riders_local_rule_and_visitor_rule():
    doc = jiaxing()
    doc["leg_rules"].append(
        {
            "id": "jx-visitor-day",
            "service": "bus",
            "riders": "visitor",
            "kind": "fixed",
            "value": 150,
            "priority": 5,
        }
    )
    e = engine(doc)
    assert e.quote(card("330100"), trip("2")).fare_fen == 150
    assert e.quote(card("330400"), trip("2")).fare_fen == 200


def test_validity_dates():
    doc = hangzhou()
    doc["leg_rules"][0]["valid_to"] = "2026-11-22"
    e = engine(doc)
    assert e.quote(card(), trip("600", "2026-11-22 10:00")).fare_fen == 180
    assert e.quote(card(), trip("600", "2026-11-23 10:00")).fare_fen == 200


# --- validation (pure; the back office refuses the same documents before publishing) -----------------


def _problems(doc) -> str:
    from citycard.terminal_kit.fares import RuleDocumentError

    with pytest.raises(RuleDocumentError) as exc:
        engine(doc)
    return str(exc.value)


def test_equal_priority_products_and_transfers_for_the_same_case_refused():
    doc = hangzhou()
    doc["fare_products"].append({"id": "hz-bus-2", "service": "bus", "amount_fen": 250})
    doc["transfer_rules"].append(
        {"id": "hz-bus-transfer-2", "from_service": "bus", "to_service": "bus", "within_minutes": 30}
    )
    problems = _problems(doc)
    assert "fare product hz-bus-2: same priority 0 as hz-bus" in problems
    assert "transfer rule hz-bus-transfer-2: same priority 0 as hz-bus-transfer" in problems


def test_timeframes_that_do_not_overlap_allow_equal_priority():
    doc = hangzhou()
    doc["leg_rules"].append(
        {
            "id": "hz-peak-promo",
            "service": "bus",
            "timeframe": "hz-peak",
            "kind": "percent",
            "value": 8000,
            "priority": 40,
            "categories": ["elderly"],
        }
    )  # hz-elderly-free (priority 40) is off-peak only: no trip matches both
    engine(doc)
    doc["leg_rules"][-1]["timeframe"] = None
    assert "same priority 40 as hz-elderly-free" in _problems(doc)


def test_percent_above_base_needs_a_flag_and_then_charges_it():
    doc = hangzhou()
    doc["leg_rules"].append(
        {"id": "night", "service": "bus", "kind": "percent", "value": 15000, "priority": 99}
    )
    assert "above the base fare" in _problems(doc)
    doc["leg_rules"][-1]["above_base"] = True
    assert engine(doc).quote(card(), trip("1")).fare_fen == 300


def test_load_signed_refuses_other_kinds():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from citycard.terminal_kit.fares import load_signed
    from citycard.terminal_kit.signing import SignatureError, public_key_bytes, sign_document

    key = Ed25519PrivateKey.generate()
    hotlist = sign_document({"kind": "hotlist", "cards": []}, key=key, key_id="k")
    with pytest.raises(SignatureError, match="not fare_rules"):
        load_signed(hotlist, keys={"k": public_key_bytes(key)})

"""The tap flow priced by the tenant's signed rule document (in-process reader, virtual cards)."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.card.virtual import EMPTY_TRANSIT, CardProfile, VirtualCard
from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.fares import load_signed
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.signing import SignatureError, public_key_bytes, sign_document
from tests.terminal_kit import kit
from tests.terminal_kit.fare_docs import hangzhou

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYS = {"hangzhou:s1": public_key_bytes(KEY)}


def signed(doc=None):
    return sign_document(doc or hangzhou(version=7), key=KEY, key_id="hangzhou:s1")


def card(serial, *, division="330100", categories=(), passes=(), balance=5000):
    number = card_number_build(division=division, scheme="01", serial=serial)
    profile = CardProfile(card_no=number, categories=frozenset(categories), passes=frozenset(passes))
    return VirtualCard(profile, kit.keys(), balance=balance)


@pytest.fixture
def validator(tmp_path):
    v = kit.validator(InProcessReader(), tmp_path)
    v.fare = load_signed(signed(), keys=KEYS, tenant="hangzhou")
    return v


def tap(v, c, at=None):
    v.transport.insert(c)
    if at is not None:
        v.clock = lambda: at
    return v.tap()


def test_fares_come_from_the_rule_document(validator):
    assert validator.rule_version == 7
    plain = tap(validator, card(1))
    assert (plain.outcome, plain.fare_fen, plain.record["fare_rule_id"]) == ("approved", 180, "hz-card-91")
    assert tap(validator, card(2, categories={"elderly"})).fare_fen == 100  # 08:30 Tuesday: peak, half price
    assert tap(validator, card(3, categories={"disabled"})).fare_fen == 0
    monthly = tap(validator, card(4, passes={"monthly"}))  # route 151: within 1-499
    assert (monthly.fare_fen, monthly.record["fare_rule_id"]) == (100, "hz-monthly-pass")
    visitor = tap(validator, card(5, division="441900"))
    assert visitor.fare_fen == 200  # outside the network: no concession


def test_card_state_carries_the_transfer_and_the_balance_follows(validator):
    c = card(9, balance=1000)
    first = tap(validator, c, kit.NOW)
    second = tap(validator, c, kit.NOW + dt.timedelta(minutes=40))
    third = tap(validator, c, kit.NOW + dt.timedelta(minutes=200))
    assert [first.fare_fen, second.fare_fen, third.fare_fen] == [180, 80, 180]
    assert second.record["fare_rule_id"] == "hz-bus-transfer"
    assert third.balance_fen == 1000 - 180 - 80 - 180


def test_declined_tap_keeps_the_state(validator):
    poor = card(10, balance=100)
    assert tap(validator, poor).outcome == "declined"
    assert poor.transit == EMPTY_TRANSIT  # the journey is written with a debit or not at all


def test_route_without_fare_is_refused_without_debit(validator):
    validator.route = "999"
    validator.service = "metro"
    result = tap(validator, card(11))
    assert result.outcome == "error" and "no fare product for metro route 999" in result.message


def test_tampered_or_foreign_rule_document_refused():
    forged = copy.deepcopy(signed())
    forged["payload"]["leg_rules"][0]["value"] = 1
    with pytest.raises(SignatureError):
        load_signed(forged, keys=KEYS)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match="unknown key"):
        load_signed(sign_document(hangzhou(), key=other, key_id="mallory"), keys=KEYS)

"""A tap sent again under a natural key (card, counter, terminal, sequence) already taken: the same
content is a duplicate, other content a conflict naming the first field that differs (Mojaloop: same
id, other payload hash). The tap taken first stays; the conflicting one is kept raw in the exceptions."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django_tenants.utils import tenant_context

from citycard.tenants.terminals.models import Batch, TapException, Transaction

from .conftest import cards, taps_for
from .test_upload import hz, post, snapshot  # noqa: F401  (hz is a fixture)

pytestmark = pytest.mark.django_db


def _results(response) -> list[tuple[str, str | None]]:
    assert response.status_code == 200, response.content
    return [(r["outcome"], r.get("reason")) for r in json.loads(response.content)["payload"]["results"]]


def test_a_stored_key_with_another_amount_is_a_conflict_and_the_stored_tap_stays(client, hz, now):  # noqa: F811
    hangzhou, sim = hz
    taps = taps_for(sim, cards("330100", 2), now)
    post(client, sim.sign(sim.payload(taps, created_at=now)))
    changed = dict(taps[0], amount_fen=300, balance_after_fen=taps[0]["balance_before_fen"] - 300)
    new = taps_for(sim, cards("330100", 1, start=9), now)
    body = sim.sign(sim.payload([changed, dict(taps[1]), *new], created_at=now))
    first = post(client, body)
    assert _results(first) == [
        ("conflict", "already received with other amount_fen"),
        ("duplicate", "already received"),
        ("accepted", None),
    ]
    ack = json.loads(first.content)["payload"]
    assert (ack["accepted"], ack["duplicates"], ack["rejected"], ack["conflicts"]) == (1, 1, 0, 1)
    before = snapshot(hangzhou)
    assert post(client, body).content == first.content  # its resend: the same bytes, nothing written
    assert snapshot(hangzhou) == before
    with tenant_context(hangzhou):
        assert Transaction.objects.get(card_no=taps[0]["card_no"]).amount_fen == 200
        (kept,) = TapException.objects.filter(reason="conflict")
        assert (kept.kind, kept.idx, kept.raw["amount_fen"]) == ("rejected", 0, 300)
        assert kept.message == "amount_fen 300 differs from 200 of the tap stored under its key"
        batch = Batch.objects.get(batch_id=json.loads(body)["payload"]["batch_id"])
        assert (batch.tap_count, batch.accepted, batch.duplicates, batch.rejected) == (3, 1, 1, 0)


def test_the_same_key_twice_in_a_batch_with_other_content_is_a_conflict(client, hz, now):  # noqa: F811
    hangzhou, sim = hz
    taps = taps_for(sim, cards("330100", 2), now)
    other = dict(taps[1], tac="0" * 8)
    assert _results(post(client, sim.sign(sim.payload([*taps, dict(taps[0]), other], created_at=now)))) == [
        ("accepted", None),
        ("accepted", None),
        ("duplicate", "repeated in this batch"),
        ("conflict", "repeated in this batch with other tac"),
    ]
    with tenant_context(hangzhou):
        assert Transaction.objects.get(card_no=taps[1]["card_no"]).tac == taps[1]["tac"]
        assert TapException.objects.get(reason="conflict").message.endswith(
            "of the tap earlier in this batch under its key"
        )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tapped_at": "+1s"}, "tapped_at"),
        ({"terminal_no": "330100000009"}, "terminal_no"),
        ({"status": "torn_resolved"}, "status"),
        ({"route": "B1"}, "route"),
        ({"categories": ["elderly"]}, "categories"),
        ({"fare_rule_id": "other"}, "fare_rule_id"),
    ],
)
def test_a_conflict_names_the_field_that_differs(client, hz, now, change, field):  # noqa: F811
    _, sim = hz
    (tap,) = taps_for(sim, cards("330100", 1), now)
    post(client, sim.sign(sim.payload([tap], created_at=now)))
    if change.get("tapped_at") == "+1s":
        change = {"tapped_at": (now + dt.timedelta(seconds=1)).isoformat()}
    again = sim.sign(sim.payload([{**tap, **change}], created_at=now))
    assert _results(post(client, again)) == [("conflict", f"already received with other {field}")]


def test_the_same_content_in_another_form_is_a_duplicate(client, hz, now):  # noqa: F811
    """The same instant in UTC, the TAC in capitals, an integer rule id: what is stored is the same."""
    _, sim = hz
    (tap,) = taps_for(sim, cards("330100", 1), now)
    tap["fare_rule_id"] = "7"
    post(client, sim.sign(sim.payload([tap], created_at=now)))
    same = dict(tap, tapped_at=now.astimezone(dt.UTC).isoformat(), tac=tap["tac"].upper(), fare_rule_id=7)
    assert _results(post(client, sim.sign(sim.payload([same], created_at=now)))) == [
        ("duplicate", "already received")
    ]


def test_an_acknowledgement_without_conflicts_has_no_conflicts_count(client, hz, now):  # noqa: F811
    """So every acknowledgement sent before conflicts were told apart is rebuilt, for its resends, as sent."""
    _, sim = hz
    taps = taps_for(sim, cards("330100", 2), now)
    ack = json.loads(post(client, sim.sign(sim.payload([*taps, dict(taps[0])], created_at=now))).content)
    assert "conflicts" not in ack["payload"]

"""The e-purse shadow (lock and read, then one upsert) behaves as following the movements one by one.

The model below is the shadow's rule written plainly (per card, in counter order: a counter at or
below the shadow's is late and ignored; otherwise the movement is checked against the shadow when it
comes right after it, and the shadow follows it); batches of movements, late ones, repeated cards and
cards seen for the first time are applied to the database and the model, and the divergences and the
stored shadows must agree.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.tenants.accounts.models import PurseShadow
from citycard.tenants.accounts.services import PurseMovement, purse_shadow_apply

CARDS = [f"33040001000000{i:05d}" for i in range(4)]
AT = dt.datetime(2026, 11, 5, 8, tzinfo=dt.UTC)

movement = st.tuples(st.integers(0, 3), st.integers(1, 8), st.integers(0, 3), st.integers(0, 2))
batches = st.lists(
    st.lists(movement, max_size=6).map(lambda ms: list({(m[0], m[1]): m for m in ms}.values())),
    min_size=1,
    max_size=5,
)


def model_apply(state: dict, moves: list[PurseMovement]) -> list[tuple[str, int, int]]:
    out = []
    for m in sorted(moves, key=lambda m: (m.card_no, m.card_counter)):
        current = state.get(m.card_no)
        if current is not None:
            balance, counter = current
            if m.card_counter <= counter:
                continue
            if m.card_counter == counter + 1 and balance != m.balance_before_fen:
                out.append((m.card_no, m.card_counter, balance))
        state[m.card_no] = (m.balance_after_fen, m.card_counter)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches)
def test_shadow_statement_follows_the_model(city, batches):
    sid = transaction.savepoint()
    try:
        state: dict[str, tuple[int, int]] = {}
        for n, batch in enumerate(batches):
            moves = [
                PurseMovement(
                    CARDS[c], counter, 100 * before, 100 * before - 10 * amount, AT + dt.timedelta(n)
                )
                for c, counter, before, amount in batch
            ]
            expected = model_apply(state, moves)
            divergences = purse_shadow_apply(movements=moves)
            got = [(d.movement.card_no, d.movement.card_counter, d.shadow_fen) for d in divergences]
            assert sorted(got) == sorted(expected)
        stored = {
            s.card_no: (s.balance_fen, s.last_counter) for s in PurseShadow.objects.filter(card_no__in=CARDS)
        }
        assert stored == state
    finally:
        transaction.savepoint_rollback(sid)

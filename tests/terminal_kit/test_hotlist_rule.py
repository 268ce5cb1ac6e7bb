"""The one hotlist rule (terminal_kit.hotlist.hotlisted) at each of its edges, and the terminal's use of it."""

from __future__ import annotations

import datetime as dt

import pytest

from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.hotlist import NO_GRACE, Hotlist, Listing, grace_minutes, hotlisted, listing_at

LISTED = dt.datetime(2026, 11, 2, 9, 0, tzinfo=BEIJING)
REMOVED = LISTED + dt.timedelta(hours=3)
GRACE = grace_minutes(10)
SECOND = dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (LISTED - SECOND, False),  # before the listing
        (LISTED, False),  # listed, but inside the grace
        (LISTED + GRACE - SECOND, False),  # the last instant inside the grace
        (LISTED + GRACE, True),  # exactly at the end of the grace: hotlisted
        (REMOVED - SECOND, True),  # the last instant before the removal
        (REMOVED, False),  # removed at the tap: not hotlisted
        (REMOVED + SECOND, False),  # after the removal
    ],
)
def test_a_removed_listing_counts_from_the_end_of_the_grace_until_the_removal(at, expected):
    assert hotlisted(Listing(listed_at=LISTED, removed_at=REMOVED), at=at, grace=GRACE) is expected


def test_a_listing_still_open_counts_for_ever_and_no_grace_counts_at_once():
    open_listing = Listing(listed_at=LISTED)
    assert hotlisted(open_listing, at=LISTED + dt.timedelta(days=3650), grace=GRACE)
    assert hotlisted(open_listing, at=LISTED, grace=NO_GRACE)
    assert not hotlisted(open_listing, at=LISTED - SECOND, grace=NO_GRACE)


def test_the_same_instant_in_another_zone_is_the_same_answer():
    at_utc = (LISTED + GRACE).astimezone(dt.UTC)
    assert hotlisted(Listing(listed_at=LISTED), at=at_utc, grace=GRACE)


def test_listing_at_gives_the_latest_listing_that_counts():
    first = Listing(listed_at=LISTED, removed_at=REMOVED, reason="lost")
    again = Listing(listed_at=REMOVED + dt.timedelta(hours=1), reason="stolen")
    assert listing_at([first, again], at=REMOVED + SECOND, grace=GRACE) is None  # between the two
    assert listing_at([first, again], at=LISTED + GRACE, grace=GRACE) == first
    assert listing_at([again, first], at=again.listed_at + GRACE, grace=GRACE) == again
    assert listing_at([], at=LISTED, grace=NO_GRACE) is None


def test_the_terminal_blocks_a_card_on_the_list_it_holds_from_the_moment_it_holds_it():
    held = Hotlist(tenant="hangzhou", version=3, cards=frozenset({"3301000100000000017"}))
    assert held.blocks("3301000100000000017", at=LISTED)
    assert not held.blocks("3301000100000000025", at=LISTED)

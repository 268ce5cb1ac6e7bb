"""pg_array gives the server the same array psycopg2's ARRAY[...] would."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.platform.sqlarrays import pg_array

pytestmark = pytest.mark.django_db

texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12
) | st.sampled_from(["NULL", "null", "", " ", "{}", "a,b", '"', "\\", '\\"', "{a}"])


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.none() | texts, max_size=8))
def test_text_arrays_round_trip(values):
    with connection.cursor() as cur:
        cur.execute("SELECT %s::text[]", [pg_array(values)])
        assert cur.fetchone()[0] == values


@settings(max_examples=30, deadline=None)
@given(
    ints=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=6),
    moments=st.lists(
        st.datetimes(
            min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
        ),
        max_size=4,
    ),
)
def test_int_and_timestamp_arrays_round_trip(ints, moments):
    with connection.cursor() as cur:
        cur.execute("SELECT %s::bigint[], %s::timestamptz[]", [pg_array(ints), pg_array(moments)])
        got_ints, got_moments = cur.fetchone()
    assert got_ints == ints and got_moments == moments

"""The upload never gives up on a transient failure and never stalls on a final refusal.

Against a scripted back office on a loopback port (tests/terminal_kit/backoffice.py); the uploader's sleep
is recorded and its clock advanced by it, so hours of outage pass instantly."""

from __future__ import annotations

import datetime as dt

import pytest

from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.upload import (
    AcknowledgementRefused,
    Uploader,
    UploadGaveUp,
    retry_after_seconds,
)
from tests.terminal_kit.backoffice import (
    BATCH_ARGS,
    HANG,
    RESET,
    RESET_AFTER_STORING,
    TENANT_KEYS,
    Backoffice,
    error,
    queue_with_taps,
    refusal,
    unavailable,
)

NOW = dt.datetime(2026, 11, 24, 0, 40, tzinfo=dt.UTC)


class FakeTime:
    """The uploader's sleep and clock: every wait is recorded and moves the clock on."""

    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += seconds

    def clock(self) -> float:
        return self.t


def uploader(office_url: str, time: FakeTime, **kwargs) -> Uploader:
    kwargs.setdefault("tenant_keys", TENANT_KEYS)
    return Uploader(
        url=office_url,
        timeout_s=0.2,
        sleep=time.sleep,
        clock=time.clock,
        now=lambda: NOW,
        **kwargs,
    )


@pytest.fixture
def store(tmp_path):
    store = TapStore(tmp_path / "taps.sqlite")
    yield store
    store.close()


def test_an_outage_is_waited_out_with_jittered_backoff_at_least_retry_after_then_acknowledged(store):
    queue_with_taps(store, 3)
    script = [
        unavailable("30"),  # wait 30 s: Retry-After over the first backoff (0 … 1 s)
        error(429, "too_many_requests", "slow down"),  # 0 … 2 s
        error(500, "internal", "the server failed on this request", request_id="4f1c"),  # 0 … 4 s
        RESET,  # 0 … 8 s
        HANG,  # the try times out after 0.2 s; 0 … 16 s
        error(408, "request_timeout", "the body came too slowly"),  # 0 … 32 s
        unavailable("Tue, 24 Nov 2026 00:42:00 GMT"),  # a date: 120 s from NOW, over 0 … 64 s
        unavailable(None),  # 503 without Retry-After: 0 … 128 s
    ]
    time, said = FakeTime(), []
    with Backoffice(script=list(script)) as office:
        up = uploader(office.url, time, on_wait=lambda batch, failure, wait: said.append(failure.what))
        assert up.drain(store, **BATCH_ARGS) == 1

    assert len(time.waits) == len(script)
    assert time.waits[0] == 30 and time.waits[6] == 120
    for n, wait in enumerate(time.waits):
        if n not in (0, 6):
            assert 0 <= wait <= 2**n, (n, wait)
    # Every try sent the same bytes of the same batch; the acknowledgement was verified and the queue emptied.
    assert len(office.received) == len(script) + 1 and len(set(office.received)) == 1
    assert sorted(office.stored) == [1, 2, 3] and store.taps() == []
    (ack,) = up.acknowledged
    assert ack["accepted"] == 3
    assert said[0].startswith("503 unavailable: the database is unavailable")
    assert said[1] == "429 too_many_requests: slow down"
    assert said[2] == "500 internal: the server failed on this request (request 4f1c)"
    assert said[3].startswith("no answer (") and said[4].startswith("no answer (")


def test_hours_of_5xx_do_not_make_the_upload_give_up():
    time, tries = FakeTime(), []

    def post(url, body, headers):
        tries.append(body)
        if len(tries) <= 200:
            return 500, b'{"error": {"code": "internal", "message": "boom"}}', {}
        return 200, office.acknowledge(body), {}

    office = Backoffice()
    store = TapStore(":memory:")
    queue_with_taps(store, 2)
    up = uploader("http://unused", time, post=post, backoff_s=0.5, backoff_max_s=60)
    assert up.drain(store, **BATCH_ARGS) == 1
    assert len(set(tries)) == 1 and len(tries) == 201
    assert time.t > 3600  # over an hour of waiting, where it used to give up after ~15 s
    assert max(time.waits) <= 60  # the backoff stops growing at its cap …
    assert sum(w < 30 for w in time.waits[20:]) > 20  # … and its waits stay spread below it (full jitter)
    assert store.taps() == []


def test_a_retry_after_of_years_is_waited_an_hour_at_most():
    time, answers = (
        FakeTime(),
        [(503, b"", {"Retry-After": "9" * 40}), (503, b"", {"retry-after": "99999999"})],
    )
    office = Backoffice()
    store = TapStore(":memory:")
    queue_with_taps(store, 1)
    post = lambda url, body, headers: answers.pop(0) if answers else (200, office.acknowledge(body), {})  # noqa: E731
    assert uploader("http://unused", time, post=post).drain(store, **BATCH_ARGS) == 1
    assert time.waits == [3600, 3600]


def test_a_deadline_gives_up_before_sleeping_past_it_and_keeps_the_batch():
    time = FakeTime()
    store = TapStore(":memory:")
    queue_with_taps(store, 2)
    up = uploader("http://unused", time, post=lambda url, body, headers: (503, b"", {"Retry-After": "30"}))
    with pytest.raises(UploadGaveUp) as gave_up:
        up.drain(store, give_up_after_s=100, **BATCH_ARGS)
    assert time.waits == [30, 30, 30] and time.t <= 100
    assert gave_up.value.last.status == 503
    (batch,) = store.queue_state().batches
    assert batch.batch_id == gave_up.value.batch_id and batch.taps == 2


def test_final_refusals_set_their_batch_aside_and_the_queue_goes_on_without_losing_or_doubling_a_tap(store):
    queue_with_taps(store, 12, bad=frozenset({4}))
    # Batches of 2 taps go oldest first: refused 400, taken, refused 409, taken (a tap rejected), 413, taken.
    script = [refusal(400), None, refusal(409), None, refusal(413), None]
    time = FakeTime()
    with Backoffice(script=script) as office:
        up = uploader(office.url, time)
        assert up.drain(store, max_taps=2, **BATCH_ARGS) == 3

    assert time.waits == []  # a refusal is not retried
    assert [(a.status, a.code, a.taps) for a in up.set_aside] == [
        (400, "malformed", 2),
        (409, "batch_conflict", 2),
        (413, "too_large", 2),
    ]
    assert up.set_aside[1].message == "batch id reused with different content"
    assert [a.batch_id for a in up.set_aside] == [b for b, _ in office.received[0:6:2]]
    # Every tap is either stored by the back office (once), rejected in an acknowledgement, or waiting
    # with its set-aside batch; none is in two places.
    aside = {t.terminal_seq for t in store.taps()}
    assert aside == {1, 2, 5, 6, 9, 10}
    assert sorted(office.stored) == [3, 7, 8, 11, 12]
    (rejected,) = [r for ack in up.acknowledged for r in ack["results"] if r["outcome"] == "rejected"]
    assert rejected["terminal_seq"] == 4
    assert store.queue_state().batches == [] and store.queue_state().unbatched == 0
    assert len(office.received) == 6


def test_an_answer_lost_after_the_batch_was_stored_is_asked_again_and_comes_back_the_same(store):
    queue_with_taps(store, 2)
    time = FakeTime()
    with Backoffice(script=[RESET_AFTER_STORING]) as office:
        up = uploader(office.url, time)
        assert up.drain(store, **BATCH_ARGS) == 1
    (batch_id,) = office.answered
    assert len(office.received) == 2 and len(set(office.received)) == 1
    assert sorted(office.stored) == [1, 2] and up.acknowledged[0]["accepted"] == 2
    assert up.acknowledged[0]["batch_id"] == batch_id and store.taps() == []


def test_an_acknowledgement_that_does_not_verify_stops_the_upload_and_keeps_the_batch(store):
    queue_with_taps(store, 1)
    time = FakeTime()
    with Backoffice() as office:
        up = uploader(office.url, time, tenant_keys={})
        with pytest.raises(AcknowledgementRefused, match="stays queued"):
            up.drain(store, **BATCH_ARGS)
    assert len(store.queue_state().batches) == 1


def test_a_set_aside_batch_requeued_is_sent_again_as_it_was_or_rebatched_and_a_dropped_one_leaves(store):
    queue_with_taps(store, 6)
    time = FakeTime()
    with Backoffice(script=[refusal(403), refusal(409), refusal(401)]) as office:
        up = uploader(office.url, time)
        assert up.drain(store, max_taps=2, **BATCH_ARGS) == 0
        first, second, third = (a.batch_id for a in up.set_aside)
        store.batch_requeue(batch_id=first, at=NOW)
        store.batch_requeue(batch_id=third, at=NOW, rebatch=True)
        store.batch_drop(batch_id=second, reason="conflicts with a batch sent from the old PSAM", at=NOW)
        assert up.drain(store, max_taps=2, **BATCH_ARGS) == 2
    sent = [batch for batch, _ in office.received]
    assert sent[3] == first and sent[4] not in (first, second, third)  # same id again; a new batch
    assert office.received[3] == office.received[0]  # the same bytes
    assert sorted(office.stored) == [1, 2, 5, 6] and store.taps() == []
    assert [(a.batch_id, a.state) for a in store.batches_set_aside()] == [
        (first, "requeued"),
        (second, "dropped"),
        (third, "rebatched"),
    ]
    assert store.batches_set_aside()[1].reason == "conflicts with a batch sent from the old PSAM"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120),
        ("9" * 400, float("inf")),
        (" 0 ", 0),
        ("Tue, 24 Nov 2026 00:41:30 GMT", 90),
        ("Tue, 24 Nov 2026 00:00:00 GMT", 0),  # a date gone by: at once
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(value, seconds):
    assert retry_after_seconds(value, now=NOW) == seconds

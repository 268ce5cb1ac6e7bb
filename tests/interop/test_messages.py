"""Signed envelopes: idempotent resend, and every refusal (each logged)."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.db import transaction
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingRecord, MessageRefusal
from citycard.interop.services.messages import message_receive
from citycard.platform import services as platform_services
from citycard.platform.audit.models import AuditEntry
from citycard.platform.envelopes import EnvelopeRefused, envelope_seal
from citycard.platform.keys import tenant_key_rotate
from citycard.tenants.exchange.models import OutboxMessage

from .conftest import DAY, at, record

pytestmark = pytest.mark.django_db
SENT = at(DAY, 11)
NOW = at(DAY, 12)
NEXT = DAY + dt.timedelta(days=1)


def _records(n=2, **kw):
    return [
        record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=i, **kw)
        for i in range(n)
    ]


def _seal(tenant, body, *, message_id="clr-jiaxing-m1", now=SENT, **kw):
    return envelope_seal(
        sender=tenant("jiaxing"),
        recipient="public",
        kind="clearing.records",
        message_id=message_id,
        body=body,
        now=now,
        **kw,
    )


def _refused(document, code, now=NOW):
    before = MessageRefusal.objects.count()
    with pytest.raises(EnvelopeRefused) as info:
        message_receive(document=document, now=now)
    assert info.value.code == code, info.value.message
    refusal = MessageRefusal.objects.order_by("-id").first()
    assert MessageRefusal.objects.count() == before + 1 and refusal.code == code
    assert AuditEntry.objects.filter(action="interop.message_refused", object_id=refusal.message_id).exists()
    return info.value


def _with_ids(records):
    for r in records:
        r["record_id"] = f"jiaxing-{r['source_tx_id']}"
    return {"records": records}


def test_resend_of_the_same_message_returns_the_earlier_result(yrd_transit, tenant):
    body = _with_ids(_records())
    first = message_receive(document=_seal(tenant, body), now=NOW)
    again = message_receive(document=_seal(tenant, body, now=SENT + dt.timedelta(minutes=5)), now=NOW)
    assert first == {"records": 2, "new": 2, "cycles": first["cycles"]}
    assert again == {**first, "idempotent": True}
    assert ClearingRecord.objects.count() == 2


def test_same_id_with_other_content_is_a_conflict_naming_it(yrd_transit, tenant):
    body = _with_ids(_records())
    message_receive(document=_seal(tenant, body), now=NOW)
    other = copy.deepcopy(body)
    other["records"][0]["amount_fen"] = 999
    error = _refused(_seal(tenant, other), "conflict")
    assert "clr-jiaxing-m1" in error.message
    assert ClearingRecord.objects.get(record_id=body["records"][0]["record_id"]).amount_fen == 200


def test_tampered_envelope_is_refused(yrd_transit, tenant):
    document = _seal(tenant, _with_ids(_records()))
    document["payload"]["body"]["records"][0]["amount_fen"] = 1
    _refused(document, "bad_signature")
    assert ClearingRecord.objects.count() == 0


def test_unknown_and_suspended_senders_are_refused(yrd_transit, tenant):
    document = _seal(tenant, _with_ids(_records()))
    stranger = copy.deepcopy(document)
    stranger["payload"]["sender"] = "atlantis"
    _refused(stranger, "unknown_sender")
    platform_services.tenant_suspend(code="jiaxing", reason="unpaid invoices", actor="test")
    error = _refused(document, "sender_suspended")
    assert "unpaid invoices" in error.message


def test_expired_replayed_misaddressed_and_future_envelopes_are_refused(yrd_transit, tenant):
    body = _with_ids(_records())
    _refused(_seal(tenant, body, ttl=dt.timedelta(minutes=30)), "expired")  # sent 11:00, now 12:00
    _refused(_seal(tenant, body, now=NOW + dt.timedelta(hours=1)), "not_yet_valid")
    misaddressed = envelope_seal(
        sender=tenant("jiaxing"),
        recipient="hangzhou",
        kind="clearing.records",
        message_id="m2",
        body=body,
        now=SENT,
    )
    _refused(misaddressed, "wrong_recipient")
    document = _seal(tenant, body)
    message_receive(document=document, now=NOW)
    _refused(document, "replayed")  # the very same transmission again (same nonce)
    assert ClearingRecord.objects.count() == 2


def test_malformed_envelopes_are_refused(yrd_transit, tenant):
    _refused({"payload": "nope"}, "malformed")
    body = _with_ids(_records())
    body["records"][0]["acquirer"] = "hangzhou"  # jiaxing cannot claim hangzhou's taps
    _refused(_seal(tenant, body), "malformed")


def test_rotated_key_verifies_during_its_overlap_only(yrd_transit, tenant):
    body = _with_ids(_records())
    document = _seal(tenant, body)
    tenant_key_rotate(tenant=tenant("jiaxing"), purpose="signing", overlap=dt.timedelta(days=7), actor="test")
    assert message_receive(document=document, now=NOW)["new"] == 2
    second = _seal(tenant, _with_ids(_records()), message_id="clr-jiaxing-m9")
    second_old = copy.deepcopy(document)
    second_old["payload"]["message_id"] = "clr-jiaxing-m8"  # re-signed content under the old key: broken
    _refused(second_old, "bad_signature")
    assert message_receive(document=second, now=NOW)["new"] == 2


def test_collect_answers_refusals_in_the_outbox(yrd_transit, tenant, send, collect):
    send("jiaxing", _records(3))
    platform_services.tenant_suspend(code="jiaxing", reason="audit", actor="test")
    assert collect("jiaxing") == {"collected": 0, "refused": 1}
    with tenant_context(tenant("jiaxing")):
        message = OutboxMessage.objects.get()
    assert message.state == "refused" and message.result["refused"] == "sender_suspended"


def test_fields_added_after_signing_are_refused(yrd_transit, tenant):
    body = _with_ids(_records())
    for key in ("a", "zz", "body_sha2"):
        document = _seal(tenant, body, message_id=f"clr-jiaxing-x{key}")
        document["payload"][key] = 1
        _refused(document, "bad_signature")
    unsigned = _seal(tenant, body, message_id="clr-jiaxing-u")
    del unsigned["signature"]
    _refused(unsigned, "bad_signature")


class _Crash(Exception):
    pass


def test_a_collection_lost_to_a_crash_is_taken_again_whole(yrd_transit, tenant, send, collect):
    """A message for two issuers across the cut-off (two business dates, two cycles). Its collection is lost
    whole (a crash before its commit reached the disk: records, nonce, answer in the outbox all go
    together), the message is pending again and the next collection takes it as the first did: each record
    once, in its own date's cycle; collected again, it is answered as a replay and adds nothing."""
    records = [
        record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=1, when=at(DAY, 9)),
        record(acquirer="jiaxing", issuer="shanghai", issuer_division="310000", serial=2, when=at(DAY, 23)),
        # 03:59 on the next day is still business date DAY (cut-off 04:00); 04:00 is the next one
        record(
            acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=3, when=at(NEXT, 3, 59)
        ),
        record(acquirer="jiaxing", issuer="shanghai", issuer_division="310000", serial=4, when=at(NEXT, 4)),
    ]
    send("jiaxing", records)
    now = at(NEXT, 12)
    with pytest.raises(_Crash), transaction.atomic():
        assert collect("jiaxing", now=now) == {"collected": 1, "refused": 0}
        with tenant_context(tenant("jiaxing")):
            lost = OutboxMessage.objects.get().result
        raise _Crash
    assert ClearingRecord.objects.count() == 0
    with tenant_context(tenant("jiaxing")):
        assert OutboxMessage.objects.get().state == "pending"
    assert collect("jiaxing", now=now) == {"collected": 1, "refused": 0}
    with tenant_context(tenant("jiaxing")):
        taken = OutboxMessage.objects.get().result
    # The same answer; the cycles' ids are new ones (the lost transaction used up its sequence numbers).
    assert (taken["records"], taken["new"]) == (lost["records"], lost["new"]) == (4, 4)
    assert sorted(taken["cycles"].values()) == sorted(lost["cycles"].values()) == [1, 3]
    dates = sorted(r.cycle.business_date for r in ClearingRecord.objects.select_related("cycle"))
    assert dates == [DAY, DAY, DAY, NEXT]
    assert collect("jiaxing", now=now) == {"collected": 0, "refused": 0}  # nothing pending
    assert ClearingRecord.objects.count() == 4

"""Two uploads from one terminal at the same moment: the same batch (a terminal retrying before its first
answer came), where one stores the taps and the other answers with the same acknowledgement; and two
overlapping batches, whose shared taps are stored once. The uploads take turns on the terminal's row."""

from __future__ import annotations

import datetime as dt
import threading
import time

from django.db import connection
from django_tenants.utils import tenant_context

from citycard.platform import services
from citycard.platform.models import Tenant
from citycard.tenants.terminals.ingest import IngestResult, batch_ingest, service
from citycard.tenants.terminals.models import Batch, Transaction
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.terminal_kit.beijing import BEIJING


def _shaoxing_terminal(terminal_id: str, route: str) -> tuple[Tenant, SimTerminal]:
    """Shaoxing (made once for the committed database) and a newly registered bus terminal of it."""
    tenant = Tenant.objects.filter(code="shaoxing").first() or services.tenant_create(
        code="shaoxing", division_code="330600", actor="test"
    )
    sim = SimTerminal(terminal_id, "shaoxing", route=route)
    with tenant_context(tenant):
        terminal_register(
            terminal_id=sim.terminal_id,
            operator="绍兴公交",
            department="transport",
            service="bus",
            route=route,
            public_key=sim.public_key,
            actor="test",
        )
    return tenant, sim


def test_the_same_batch_uploaded_twice_at_once_is_stored_once(committed_db, monkeypatch):
    tenant, sim = _shaoxing_terminal("SX-BUS-0001", "1")
    now = dt.datetime.now(BEIJING).replace(microsecond=0)
    taps = [
        sim.tap(SimCard(card_number("330600", i)), at=now - dt.timedelta(minutes=i)) for i in range(1, 200)
    ]
    body = sim.sign(sim.payload(taps, created_at=now))
    # The first upload holds its transaction open after storing the taps, so the second one finds no
    # stored batch, waits on the terminal's row, finds every tap stored and then the batch id: a resend.
    sign, signed, resends = service.tenant_signature, [], []

    def slow_sign(**kwargs):
        signed.append(1)
        if len(signed) == 1:
            time.sleep(1.0)
        return sign(**kwargs)

    stored_batch = service.stored_batch

    def counting_stored_batch(*args):
        resends.append(1)
        return stored_batch(*args)

    monkeypatch.setattr(service, "tenant_signature", slow_sign)
    monkeypatch.setattr(service, "stored_batch", counting_stored_batch)
    start = threading.Barrier(2)
    answers: list[bytes] = []
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            connection.set_tenant(tenant)
            start.wait()
            answers.append(batch_ingest(tenant=tenant, body=body).body)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(answers) == 2 and answers[0] == answers[1]
    assert len(signed) == 2 and len(resends) == 1  # both stored and signed; one lost the race at the end
    with tenant_context(tenant):
        assert Batch.objects.count() == 1
        assert Transaction.objects.count() == 199
        assert Batch.objects.get().accepted == 199


def test_overlapping_batches_uploaded_at_once_store_each_tap_once(committed_db, monkeypatch):
    """A terminal that packs taps it is still waiting on into a new batch (another batch id) while the
    first upload is in flight: the uploads take turns on the terminal's row lock, and the second finds
    the first one's taps stored, whichever came first."""
    tenant, sim = _shaoxing_terminal("SX-BUS-0002", "2")
    now = dt.datetime.now(BEIJING).replace(microsecond=0)
    with tenant_context(tenant):
        before = Transaction.objects.count()
    taps = [
        sim.tap(SimCard(card_number("330600", i)), at=now - dt.timedelta(minutes=i)) for i in range(1, 202)
    ]
    # A first batch sets the terminal's high-water mark, so the second upload's lookup reads a mark the
    # first one then raises: the taps between the two are looked up once the lock is taken.
    with tenant_context(tenant):
        assert batch_ingest(tenant=tenant, body=sim.sign(sim.payload(taps[:1], created_at=now))).accepted == 1
    taps = taps[1:]
    bodies = [
        sim.sign(sim.payload(taps[:199], created_at=now)),
        sim.sign(sim.payload(taps, created_at=now + dt.timedelta(seconds=1))),
    ]
    sign, signed = service.tenant_signature, []

    def slow_sign(**kwargs):  # the first to take the lock holds it a second after its COPY
        signed.append(1)
        if len(signed) == 1:
            time.sleep(1.0)
        return sign(**kwargs)

    monkeypatch.setattr(service, "tenant_signature", slow_sign)
    start = threading.Barrier(2)
    results: list[IngestResult] = []
    errors: list[BaseException] = []

    def upload(body: bytes) -> None:
        try:
            connection.set_tenant(tenant)
            start.wait()
            results.append(batch_ingest(tenant=tenant, body=body))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sorted((r.accepted, r.duplicates) for r in results) in ([(0, 199), (200, 0)], [(1, 199), (199, 0)])
    with tenant_context(tenant):
        assert Transaction.objects.count() - before == 201
        assert (
            Transaction.objects.filter(terminal_id=sim.terminal_id).values("terminal_seq").distinct().count()
            == 201
        )

import json

from django_tenants.utils import tenant_context

from citycard.tenants.terminals.models import Transaction
from citycard.tenants.terminals.simulate import SimTerminal

from .conftest import cards, taps_for


def test_upload_accepts(tenant, register, client, now):
    hz = tenant("hangzhou")
    sim = SimTerminal("HZ-BUS-1", "hangzhou")
    with tenant_context(hz):
        register(sim)
    body = sim.sign(sim.payload(taps_for(sim, cards("330100", 3), now), created_at=now))
    r = client.post("/terminal/v1/batches", body, content_type="application/json", HTTP_HOST="hangzhou.localhost")
    assert r.status_code == 200, r.content
    ack = json.loads(r.content)
    assert ack["payload"]["accepted"] == 3
    with tenant_context(hz):
        assert Transaction.objects.count() == 3

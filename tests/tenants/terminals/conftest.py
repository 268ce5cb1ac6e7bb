from __future__ import annotations

import datetime as dt

import pytest

from citycard.tenants.terminals import checks
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.terminal_kit.beijing import BEIJING


@pytest.fixture(autouse=True)
def _fresh_route_cache():
    checks.route_cache_clear()
    yield
    checks.route_cache_clear()


@pytest.fixture
def now():
    from django.utils import timezone

    return timezone.now().astimezone(BEIJING).replace(microsecond=0)


@pytest.fixture
def register(db):
    """Register a simulated terminal in the current tenant schema: ``register(sim)``."""
    from citycard.tenants.terminals.services import terminal_register

    def _register(sim: SimTerminal, **kwargs):
        from django.db import connection

        from citycard.platform.keys import tenant_card_tac_master

        # The simulated cards of this tenant's issuer carry TACs under the issuer's real key.
        issuer = connection.tenant.clearing_tenant
        sim.tac_masters[issuer.division_code] = tenant_card_tac_master(tenant=issuer)
        return terminal_register(
            terminal_id=sim.terminal_id,
            operator=kwargs.get("operator", "Test Bus Co."),
            department=kwargs.get("department", "transport"),
            service=sim.service,
            route=sim.route,
            public_key=sim.public_key,
            actor="test",
        )

    return _register


def cards(division: str, n: int, start: int = 1) -> list[SimCard]:
    return [SimCard(card_number(division, start + i)) for i in range(n)]


def taps_for(sim: SimTerminal, card_list, at: dt.datetime, *, step=dt.timedelta(seconds=30)) -> list[dict]:
    return [sim.tap(card, at=at + i * step) for i, card in enumerate(card_list)]

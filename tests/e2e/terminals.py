"""A simulated terminal registered for an end-to-end test that talks to a real server."""

from __future__ import annotations

from django.db import connection
from django_tenants.utils import tenant_context

from citycard.platform import keys
from citycard.platform.models import Tenant
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SimTerminal


def sim_terminal_register(
    *, tenant: Tenant, terminal_id: str, route: str, terminal_no: str, operator: str
) -> SimTerminal:
    """A bus terminal of ``tenant`` registered with its public key; the tenant's own cards tap with TACs
    under the tenant's real card key. The connection is left in the public schema (the server's)."""
    sim = SimTerminal(terminal_id, tenant.code, route=route, terminal_no=terminal_no)
    with tenant_context(tenant):
        sim.tac_masters[tenant.division_code] = keys.tenant_card_tac_master(tenant=tenant)
        terminal_register(
            terminal_id=sim.terminal_id,
            operator=operator,
            department="transport",
            service="bus",
            route=route,
            public_key=sim.public_key,
            actor="test",
        )
    connection.set_schema_to_public()
    return sim

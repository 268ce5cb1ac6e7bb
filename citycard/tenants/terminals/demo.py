"""Demo step: a few terminals per demo tenant, each uploading one small signed batch of generated taps."""

from __future__ import annotations

import datetime as dt
import random

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone
from django_tenants.utils import tenant_context
from rich.table import Table

from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import Terminal, Transaction
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SHANGHAI, SimCard, SimTerminal, card_number

# Which issuers' cards each demo tenant's terminals see (own cards, roaming partners, a stranger).
_VISITORS = {"yrd": ["310000", "330100", "330400"], "gba": ["441900", "440300"]}


def _demo_key(terminal_id: str) -> Ed25519PrivateKey:
    """A deterministic key per demo terminal, so re-running the demo signs with the registered key."""
    seed = terminal_id.encode().ljust(32, b"\0")[:32]
    return Ed25519PrivateKey.from_private_bytes(seed)


def demo_step(ctx) -> None:
    table = Table(title="Terminal uploads (one signed batch per terminal)")
    for col in (
        "tenant",
        "terminal",
        "taps",
        "accepted",
        "duplicate",
        "rejected",
        "stored: own",
        "roaming",
        "held",
        "resend",
    ):
        table.add_column(col)
    now = timezone.now().astimezone(SHANGHAI).replace(microsecond=0)
    for code, tenant in ctx.tenants.items():
        city = tenant.clearing_tenant
        network = "gba" if city.division_code.startswith("44") else "yrd"
        issuers = [*_VISITORS[network], "110000"]  # 110000: Beijing, not on the platform
        rng = random.Random(code)
        with tenant_context(tenant):
            for n in range(1, 3):
                terminal_id = f"{code[:3].upper()}-BUS-{n:03d}"
                sim = SimTerminal(terminal_id, code, route=str(n * 11), private_key=_demo_key(terminal_id))
                if not Terminal.objects.filter(terminal_id=terminal_id).exists():
                    terminal_register(
                        terminal_id=terminal_id,
                        operator=f"{tenant.name_zh}公交",
                        department="transport",
                        service="bus",
                        route=sim.route,
                        public_key=sim.public_key,
                        actor="demo",
                    )
                sim.seq = Terminal.objects.get(terminal_id=terminal_id).last_seq or 0
                taps = []
                for i in range(8):
                    issuer = city.division_code if i < 5 else rng.choice(issuers)
                    card = SimCard(card_number(issuer, rng.randrange(1, 500)), counter=rng.randrange(1, 50))
                    taps.append(sim.tap(card, at=now - dt.timedelta(minutes=30 - i), rng=rng))
                body = sim.sign(
                    sim.payload(taps, created_at=now, batch_id=f"{terminal_id}-{now:%Y%m%d%H%M%S}")
                )
                result = batch_ingest(tenant=tenant, body=body)
                again = batch_ingest(tenant=tenant, body=body)
                rows = Transaction.objects.filter(terminal_id=terminal_id)
                table.add_row(
                    code,
                    terminal_id,
                    str(len(taps)),
                    str(result.accepted),
                    str(result.duplicates),
                    str(result.rejected),
                    str(rows.filter(routing="own").count()),
                    str(rows.filter(routing="roaming").count()),
                    str(rows.filter(routing="held").count()),
                    "identical" if again.body == result.body else "DIFFERENT",
                )
    ctx.console.print(table)
    ctx.console.print(
        "Terminals upload to POST http://<tenant>.localhost:8000/terminal/v1/batches (docs/ingestion.md); "
        "see them at /admin/terminals/ on each tenant site."
    )

"""Changing the terminal registry, and taking uploads (see the ingest package for the upload path itself)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.checks import Tap, clearing_record
from citycard.tenants.terminals.ingest import BatchRefused, IngestResult, batch_ingest
from citycard.tenants.terminals.ingest.spec import TAPPED_AT_MAX_AGE
from citycard.tenants.terminals.journeys import half_journeys_due
from citycard.tenants.terminals.models import (
    Batch,
    CodeNonce,
    Journey,
    JourneyStatus,
    OutboxState,
    Routing,
    Terminal,
    TerminalKey,
    TerminalStatus,
    Transaction,
)

__all__ = [
    "BatchRefused",
    "IngestResult",
    "batch_ingest",
    "code_nonces_purge",
    "half_journeys_release",
    "public_key_parse",
    "roaming_pending_handoff",
    "terminal_key_rotate",
    "terminal_register",
    "terminal_resume",
    "terminal_suspend",
]

DEFAULT_KEY_OVERLAP = dt.timedelta(days=7)
_TERMINAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def public_key_parse(text: str | bytes) -> bytes:
    """A raw 32-byte Ed25519 public key from bytes, base64 or hex text."""
    if isinstance(text, bytes | bytearray | memoryview):
        raw = bytes(text)
    else:
        text = text.strip()
        try:
            raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raw = b""
    if len(raw) != 32:
        raise DomainError(
            gettext("the public key must be 32 bytes of Ed25519 key, as base64 or hex"),
            code="invalid",
            field="public_key",
        )
    return raw


def _terminal(terminal_id: str, *, lock: bool = False) -> Terminal:
    qs = Terminal.objects.select_for_update() if lock else Terminal.objects
    terminal = qs.filter(terminal_id=terminal_id).first()
    if terminal is None:
        raise NotFound(
            gettext("no terminal %(terminal_id)r is registered here") % {"terminal_id": terminal_id},
            field="terminal_id",
        )
    return terminal


@transaction.atomic
def terminal_register(
    *,
    terminal_id: str,
    operator: str,
    department: str,
    service: str,
    public_key: str | bytes,
    route: str = "",
    location: str = "",
    gate: str = "",
    actor: str,
) -> Terminal:
    """Register a terminal with its first Ed25519 public key (its key id is ``<terminal_id>:k1``)."""
    if not _TERMINAL_ID.match(terminal_id or ""):
        raise DomainError(
            gettext("terminal id %(terminal_id)r must be 1–40 letters, digits, '.', '_' or '-'")
            % {"terminal_id": terminal_id},
            code="invalid",
            field="terminal_id",
        )
    if not (operator or "").strip():
        raise DomainError(gettext("a terminal needs an operator"), code="invalid", field="operator")
    for name, value in (("department", department), ("service", service)):
        if not _CODE.match(value or ""):
            raise DomainError(
                gettext("%(name)s %(value)r must be a lower-case code") % {"name": name, "value": value},
                code="invalid",
                field=name,
            )
    if not (route or location):
        raise DomainError(gettext("a terminal needs a route or a location"), code="invalid", field="route")
    if gate not in ("", "entry", "exit") or (gate and not location):
        raise DomainError(
            gettext("a gate is 'entry' or 'exit' at a location (its station id)"),
            code="invalid",
            field="gate",
        )
    raw = public_key_parse(public_key)
    if Terminal.objects.filter(terminal_id=terminal_id).exists():
        raise Conflict(
            gettext("terminal %(terminal_id)s is already registered") % {"terminal_id": terminal_id},
            field="terminal_id",
        )
    if TerminalKey.objects.filter(public_key=raw).exists():
        raise Conflict(gettext("that public key already belongs to a terminal"), field="public_key")
    terminal = Terminal.objects.create(
        terminal_id=terminal_id,
        operator=operator.strip(),
        department=department,
        service=service,
        route=route,
        location=location,
        gate=gate,
        registered_by=actor,
    )
    key = TerminalKey.objects.create(terminal=terminal, key_id=f"{terminal_id}:k1", version=1, public_key=raw)
    audit_record(
        action="terminal.register",
        actor=actor,
        object_type="terminal",
        object_id=terminal_id,
        data={
            "operator": terminal.operator,
            "department": department,
            "service": service,
            "route": route,
            "location": location,
            **({"gate": gate} if gate else {}),
            "key_id": key.key_id,
        },
    )
    return terminal


@transaction.atomic
def terminal_key_rotate(
    *, terminal_id: str, public_key: str | bytes, overlap: dt.timedelta = DEFAULT_KEY_OVERLAP, actor: str
) -> TerminalKey:
    """Give a terminal a new key; the old one keeps verifying for ``overlap`` (batches queued offline)."""
    if overlap < dt.timedelta(0):
        raise DomainError(gettext("the overlap window cannot be negative"), code="invalid", field="overlap")
    terminal = _terminal(terminal_id, lock=True)
    raw = public_key_parse(public_key)
    if TerminalKey.objects.filter(public_key=raw).exists():
        raise Conflict(
            gettext("that public key is already in use; a rotation needs a new key"), field="public_key"
        )
    now = timezone.now()
    old = TerminalKey.objects.filter(terminal=terminal, retired_at__isnull=True).first()
    version = (TerminalKey.objects.filter(terminal=terminal).order_by("-version").first().version or 0) + 1
    if old is not None:
        old.retired_at, old.verify_until = now, now + overlap
        old.save(update_fields=["retired_at", "verify_until"])
    key = TerminalKey.objects.create(
        terminal=terminal, key_id=f"{terminal_id}:k{version}", version=version, public_key=raw
    )
    audit_record(
        action="terminal.key_rotate",
        actor=actor,
        object_type="terminal",
        object_id=terminal_id,
        data={
            "key_id": key.key_id,
            "retired": old.key_id if old else None,
            "verify_until": old.verify_until.isoformat() if old else None,
        },
    )
    return key


@transaction.atomic
def terminal_suspend(*, terminal_id: str, reason: str, actor: str) -> Terminal:
    """Suspend a terminal: its uploads are refused (403) until it is resumed."""
    if not (reason or "").strip():
        raise DomainError(gettext("say why the terminal is suspended"), code="invalid", field="reason")
    terminal = _terminal(terminal_id, lock=True)
    terminal.status, terminal.status_reason = TerminalStatus.SUSPENDED, reason.strip()[:200]
    terminal.save(update_fields=["status", "status_reason"])
    audit_record(
        action="terminal.suspend",
        actor=actor,
        object_type="terminal",
        object_id=terminal_id,
        data={"reason": reason},
    )
    return terminal


@transaction.atomic
def terminal_resume(*, terminal_id: str, actor: str) -> Terminal:
    terminal = _terminal(terminal_id, lock=True)
    terminal.status, terminal.status_reason = TerminalStatus.ACTIVE, ""
    terminal.save(update_fields=["status", "status_reason"])
    audit_record(action="terminal.resume", actor=actor, object_type="terminal", object_id=terminal_id)
    return terminal


def _tap_of(row: Transaction) -> Tap:
    """A stored transaction as the checks and the clearing record see it."""
    return Tap(
        index=row.idx,
        card_no=row.card_no,
        issuer=row.issuer,
        card_counter=row.card_counter,
        terminal_seq=row.terminal_seq,
        amount_fen=row.amount_fen,
        balance_before_fen=row.balance_before_fen,
        balance_after_fen=row.balance_after_fen,
        tapped_at=row.tapped_at,
        service=row.service,
        route=row.route,
        tac=row.tac,
        terminal_no=row.terminal_no,
        algorithm=row.algorithm,
        kind=row.kind,
        status=row.status,
        card_scheme=row.card_scheme,
        categories=list(row.categories),
        passes=list(row.passes),
        fare_rule_id=row.fare_rule_id,
        routing=row.routing,
        issuer_tenant=row.issuer_tenant,
        network=row.network,
        tx_id=row.id,
    )


@transaction.atomic
def roaming_pending_handoff(*, actor: str, limit: int = 5000) -> int:
    """Hand stored roaming taps still ``pending`` to the interop outbox (``checks.ROAMING_SINK``).

    Refuses while no sink is wired (nothing is marked sent that was not delivered). Returns how many
    taps were handed over; run again until it returns 0.
    """
    sink = checks.ROAMING_SINK
    if sink is None:
        raise DomainError(
            gettext("no interop outbox is wired (checks.ROAMING_SINK); roaming taps stay pending"),
            code="not_wired",
        )
    rows = list(
        Transaction.objects.select_for_update(skip_locked=True)
        .filter(outbox_state=OutboxState.PENDING)
        .order_by("id")[:limit]
    )
    if not rows:
        return 0
    records = []
    for row in rows:
        tap = _tap_of(row)
        records.append((row.batch_id, row.terminal_id, tap, row.acquirer))  # batch_id: the Batch pk
    batch_ids = dict(Batch.objects.filter(pk__in={r[0] for r in records}).values_list("pk", "batch_id"))
    sink(
        [
            clearing_record(ctx_acquirer=acq, batch_id=batch_ids.get(b, ""), terminal_id=term, tap=tap)
            for b, term, tap, acq in records
        ],
        actor,
    )
    Transaction.objects.filter(id__in=[r.id for r in rows]).update(outbox_state=OutboxState.SENT)
    audit_record(
        action="terminal.roaming_handoff", actor=actor, object_type="transaction", data={"count": len(rows)}
    )
    return len(rows)


@transaction.atomic
def half_journeys_release(*, actor: str, now: dt.datetime | None = None) -> int:
    """Settle the half journeys past their time-out alone (半程行程超时清算): an entry whose exit never came,
    an exit whose entry never came (or was uploaded to another schema). Each is marked released with the
    tap that carries its money (``released_at``, ``released_tx_id``).

    A roaming card's released tap goes to the interop outbox as its own record (``<schema>-<tap's
    transaction id>``) with what it took — a tap that took nothing too, as a zero-amount record, so the
    issuer sees (validates and claims) its card counter; the cycle carries it and no money moves. An own
    card's half is settled in the city's own books as its whole journeys are: its taps' money is already
    there (the chip paid; the e-purse shadow followed each tap at ingestion) and nothing leaves the schema,
    so it is marked released and sends nothing. Idempotent: a released journey is never released again,
    and its other half, arriving late, clears alone with what it took (``exchange.services._clearing_items``).
    Returns how many were released."""
    now = now or timezone.now()
    journeys = half_journeys_due(tenant=connection.tenant, now=now)
    if not journeys:
        return 0
    roaming = [j for j in journeys if j.routing == Routing.ROAMING]
    sink = checks.ROAMING_SINK
    if roaming and sink is None:
        raise DomainError(
            gettext("no interop outbox is wired (checks.ROAMING_SINK); roaming taps stay pending"),
            code="not_wired",
        )
    half = {j.pk: j.entry_tx_id if j.status == JourneyStatus.OPEN else j.exit_tx_id for j in journeys}
    for journey in journeys:
        journey.released_at, journey.released_tx_id = now, half[journey.pk]
    Journey.objects.bulk_update(journeys, ["released_at", "released_tx_id"])
    # every roaming half's tap, what it took or nothing: the issuer sees each card counter once
    taking = list(Transaction.objects.filter(id__in=[half[j.pk] for j in roaming]).order_by("id"))
    if taking:
        batch_ids = dict(
            Batch.objects.filter(pk__in={r.batch_id for r in taking}).values_list("pk", "batch_id")
        )
        sink(
            [
                clearing_record(
                    ctx_acquirer=r.acquirer,
                    batch_id=batch_ids.get(r.batch_id, ""),
                    terminal_id=r.terminal_id,
                    tap=_tap_of(r),
                )
                for r in taking
            ],
            actor,
        )
    audit_record(
        action="terminal.half_journeys_release",
        actor=actor,
        object_type="journey",
        data={
            "released": len(journeys),
            "own": len(journeys) - len(roaming),
            "cleared": len(taking),
            "cleared_fen": sum(r.amount_fen for r in taking),
        },
    )
    return len(journeys)


# How long a spent citizen code is remembered: a replay of it must be a ride within the code's validity (an
# hour at most after it was claimed) uploaded at most TAPPED_AT_MAX_AGE after the ride (older taps are
# refused at ingestion), and a roaming record of it is validated within the clearing cycle's weeks.
CODE_NONCE_KEEP = TAPPED_AT_MAX_AGE + dt.timedelta(days=30)


def code_nonces_purge(*, now: dt.datetime | None = None) -> int:
    """Forget the spent citizen codes claimed more than ``CODE_NONCE_KEEP`` ago (no replay of them could
    be accepted any more); one statement through the claim-time index. Returns how many."""
    cutoff = (now or timezone.now()) - CODE_NONCE_KEEP
    deleted, _ = CodeNonce.objects.filter(claimed_at__lt=cutoff).delete()
    return deleted

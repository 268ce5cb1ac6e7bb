"""Terminals (终端), their keys, uploaded batches and the transactions they carry, in each tenant's schema.

``Transaction`` lives in a table partitioned by month of ``tapped_at`` (PostgreSQL declarative
partitioning, created by the migration with raw SQL; see partitions.py). Its natural key (card number,
card counter, terminal, terminal sequence) is kept unique by ingestion under the terminal's row lock:
a tap above the terminal's high-water mark (``Terminal.last_seq``) is new; one at or below it is looked
up through the (terminal, sequence) index whatever month it claims (a unique index on a partitioned
table would have to contain the partition key).
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q


class TerminalStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended (uploads refused)"


class Terminal(models.Model):
    """A bus validator, metro gate, POS or kiosk registered with this tenant (车载机/闸机/POS)."""

    terminal_id = models.CharField(max_length=40, unique=True, help_text="The id the terminal signs with.")
    operator = models.CharField(max_length=100, help_text="Who runs it (e.g. 杭州公交集团).")
    department = models.CharField(max_length=40, help_text="Department code (e.g. transport).")
    service = models.CharField(max_length=20, help_text="bus, metro, ferry, bike, park, library…")
    route = models.CharField(max_length=40, blank=True, help_text="Route or line, for vehicles.")
    location = models.CharField(max_length=120, blank=True, help_text="Station or place, for fixed ones.")
    # A metro gate (闸机): "entry" or "exit", its ``location`` the station id of the fare rules.
    gate = models.CharField(
        max_length=5, blank=True, choices=[("entry", "entry"), ("exit", "exit")], help_text="metro gates"
    )
    status = models.CharField(max_length=10, choices=TerminalStatus.choices, default=TerminalStatus.ACTIVE)
    status_reason = models.CharField(max_length=200, blank=True)
    last_seq = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Highest terminal sequence received (gap detection; a tap above it cannot be a resend).",
    )
    registered_at = models.DateTimeField(auto_now_add=True)
    registered_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["terminal_id"]

    def __str__(self) -> str:
        return self.terminal_id

    @property
    def is_active(self) -> bool:
        return self.status == TerminalStatus.ACTIVE


class TerminalKey(models.Model):
    """An Ed25519 public key a terminal signs its batches with; a rotated-out key verifies until
    ``verify_until`` (the overlap window, so batches queued offline before the rotation still upload)."""

    terminal = models.ForeignKey(Terminal, on_delete=models.PROTECT, related_name="keys")
    key_id = models.CharField(max_length=60, unique=True)
    version = models.PositiveIntegerField()
    public_key = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    verify_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["terminal_id", "version"]
        constraints = [
            models.UniqueConstraint(fields=["terminal", "version"], name="terminalkey_version_unique"),
            models.UniqueConstraint(
                fields=["terminal"], condition=Q(retired_at__isnull=True), name="terminalkey_one_current"
            ),
        ]

    def __str__(self) -> str:
        return self.key_id


class Batch(models.Model):
    """One uploaded batch (上传批次) and what its signed acknowledgement is made of, so a resend of the
    same content gets exactly the same bytes: the acknowledgement lists every tap by its card number and
    counters, which the resent content carries again, so only its outcomes other than ``accepted``, its
    received time and its signature are kept (``ingest.ack_rebuild``), a few hundred bytes instead of
    about 50 KB per 500 taps."""

    batch_id = models.CharField(max_length=80, unique=True)
    terminal = models.ForeignKey(Terminal, on_delete=models.PROTECT, related_name="batches")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the canonical JSON of the payload.")
    created_at = models.DateTimeField(help_text="The terminal's clock when it closed the batch.")
    received_at = models.DateTimeField()
    clock_skew_s = models.IntegerField(default=0, help_text="Terminal clock minus received time, seconds.")
    rule_version = models.IntegerField()
    hotlist_version = models.IntegerField()
    tap_count = models.IntegerField(default=0)
    accepted = models.IntegerField(default=0)
    duplicates = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)
    ack_parts = models.TextField(
        help_text="The acknowledgement's received_at text, signature JSON and non-accepted outcomes (JSON)."
    )
    first_tx_id = models.BigIntegerField(null=True, blank=True, help_text="Lowest transaction id stored.")
    last_tx_id = models.BigIntegerField(null=True, blank=True, help_text="Highest transaction id stored.")
    verified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the stored-data checks ran over its taps (None: not yet)."
    )

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "batches"
        indexes = [
            models.Index(fields=["id"], name="batch_unverified", condition=Q(verified_at__isnull=True))
        ]

    def __str__(self) -> str:
        return self.batch_id


class Routing(models.TextChoices):
    OWN = "own", "Own card"
    ROAMING = "roaming", "Roaming (clears with the issuer)"
    HELD = "held", "Held as an exception"


class OutboxState(models.TextChoices):
    NONE = "", "—"
    PENDING = "pending", "Waiting for the interop outbox"
    SENT = "sent", "In the interop outbox"


class Transaction(models.Model):
    """One tap or purchase (交易), stored in the month partition of ``tapped_at``.

    The database key is (id, tapped_at); Django addresses rows by ``id`` alone, which is unique.
    ``acquirer`` is the tenant that clears the tap (a county's terminals clear as its city).
    """

    id = models.BigAutoField(primary_key=True)
    tapped_at = models.DateTimeField()
    received_at = models.DateTimeField()
    batch = models.ForeignKey(Batch, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    idx = models.IntegerField(help_text="Position in the batch.")
    terminal_id = models.CharField(max_length=40)
    terminal_seq = models.BigIntegerField()
    card_no = models.CharField(max_length=19)
    issuer = models.CharField(max_length=6)
    card_counter = models.BigIntegerField()
    amount_fen = models.BigIntegerField()
    balance_before_fen = models.BigIntegerField()
    balance_after_fen = models.BigIntegerField()
    service = models.CharField(max_length=20)
    route = models.CharField(max_length=40, blank=True)
    tac = models.CharField(max_length=64)
    terminal_no = models.CharField(
        max_length=12, help_text="The SAM's 6-byte terminal number (hex), part of what the TAC covers."
    )
    algorithm = models.PositiveSmallIntegerField(help_text="The card's algorithm id: 4 SM4, 0 3DES.")
    kind = models.CharField(max_length=20)
    status = models.CharField(max_length=30)
    card_scheme = models.CharField(max_length=40, blank=True)
    categories = ArrayField(models.CharField(max_length=30), default=list, blank=True)
    passes = ArrayField(
        models.CharField(max_length=30),
        default=list,
        blank=True,
        help_text="Transit passes on the card the fare was priced with (e.g. monthly).",
    )
    fare_rule_id = models.CharField(max_length=60, blank=True)
    card_trip = models.CharField(
        max_length=256,
        blank=True,
        default="",
        db_default="",
        help_text="The transit record the card gave before the tap (hex): the journey the fare was priced from.",
    )
    rule_version = models.IntegerField()
    hotlist_version = models.IntegerField()
    acquirer = models.CharField(max_length=30)
    routing = models.CharField(max_length=10, choices=Routing.choices)
    issuer_tenant = models.CharField(max_length=30, blank=True)
    network = models.CharField(max_length=20, blank=True)
    outbox_state = models.CharField(max_length=10, choices=OutboxState.choices, blank=True, default="")

    class Meta:
        db_table = "terminals_transaction"
        ordering = ["-tapped_at", "-id"]

    def __str__(self) -> str:
        return f"{self.card_no}#{self.card_counter}@{self.terminal_id}/{self.terminal_seq}"


class ReviewFlag(models.Model):
    """A stored tap that someone should look at (待复核): counter gap, clock skew, fare mismatch…"""

    transaction_id = models.BigIntegerField()
    tapped_at = models.DateTimeField()
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="flags")
    card_no = models.CharField(max_length=19)
    code = models.CharField(max_length=40)
    detail = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [
            models.Index(
                fields=["code", "created_at"], name="reviewflag_open", condition=Q(resolved_at=None)
            ),
            models.Index(fields=["transaction_id"], name="reviewflag_tx"),
        ]

    def __str__(self) -> str:
        return f"{self.code} on {self.card_no}"


class ExceptionKind(models.TextChoices):
    HELD = "held", "Held roaming tap (stored, not routed)"
    REJECTED = "rejected", "Rejected tap (not stored as a transaction)"


class TapException(models.Model):
    """A tap that could not go its normal way (异常): a roaming tap held because its issuer is unknown or
    outside every shared network, or a tap refused at ingestion (kept raw, so nothing a terminal sent
    is lost)."""

    kind = models.CharField(max_length=10, choices=ExceptionKind.choices)
    reason = models.CharField(max_length=60)
    message = models.CharField(max_length=300)
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="exceptions")
    idx = models.IntegerField()
    transaction_id = models.BigIntegerField(null=True, blank=True)
    tapped_at = models.DateTimeField(null=True, blank=True)
    card_no = models.CharField(max_length=40, blank=True)
    issuer = models.CharField(max_length=10, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [
            models.Index(fields=["kind", "reason"], name="tapexception_open", condition=Q(resolved_at=None))
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.reason} {self.card_no}"


class JourneyStatus(models.TextChoices):
    OPEN = "open"  # an entry, no exit yet
    COMPLETE = "complete"
    NO_ENTRY = "no_entry"  # an exit the card had no entry for (the penalty fare)
    EXIT_ONLY = "exit_only"  # an exit whose entry tap has not arrived (yet)


class Journey(models.Model):
    """A gated journey (进出站行程): a card's entry and exit taps paired at ingestion, in whichever order
    their batches arrive. The entry is named by what the exit read from the card (card, entry gate's
    terminal number, entry minute), so pairing is exact and idempotent."""

    key = models.CharField(max_length=80, unique=True, help_text="card:entry terminal no:entry Unix minute")
    card_no = models.CharField(max_length=19)
    issuer = models.CharField(max_length=6)
    line = models.CharField(max_length=40, blank=True)
    origin = models.CharField(max_length=64, blank=True)
    destination = models.CharField(max_length=64, blank=True)
    entered_at = models.DateTimeField(null=True, blank=True)
    exited_at = models.DateTimeField(null=True, blank=True)
    entry_tx_id = models.BigIntegerField(null=True, blank=True)
    exit_tx_id = models.BigIntegerField(null=True, blank=True)
    entry_fen = models.BigIntegerField(default=0)
    exit_fen = models.BigIntegerField(default=0)
    routing = models.CharField(max_length=10, blank=True)
    status = models.CharField(max_length=10, choices=JourneyStatus.choices)

    class Meta:
        indexes = [models.Index(fields=["card_no", "entered_at"], name="journey_card_idx")]

    def __str__(self) -> str:
        return f"{self.card_no} {self.origin or '?'} -> {self.destination or '…'}"

    @property
    def fare_fen(self) -> int:
        return self.entry_fen + self.exit_fen

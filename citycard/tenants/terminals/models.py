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
from django.utils.translation import gettext_lazy as _

# The service of a merchant's POS (``citycard.tenants.merchants``): its purchases are the merchant's
# e-purse payments, priced by the merchant (no fare rule rechecks them); its route is the merchant's code.
MERCHANT_SERVICE = "merchant"


class TerminalStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended (uploads refused)")


class Terminal(models.Model):
    """A bus validator, metro gate, POS or kiosk registered with this tenant (车载机/闸机/POS)."""

    terminal_id = models.CharField(
        max_length=40,
        unique=True,
        help_text=_("The id the terminal signs with."),
        verbose_name=_("terminal id"),
    )
    operator = models.CharField(
        max_length=100, help_text=_("Who runs it (e.g. 杭州公交集团)."), verbose_name=_("operator")
    )
    department = models.CharField(
        max_length=40, help_text=_("Department code (e.g. transport)."), verbose_name=_("department")
    )
    service = models.CharField(
        max_length=20, help_text=_("bus, metro, ferry, bike, park, library…"), verbose_name=_("service")
    )
    # Route ids and names as GTFS feeds give them (no short limit: a longer name would be cut or refused).
    route = models.CharField(
        max_length=255, blank=True, help_text=_("Route or line, for vehicles."), verbose_name=_("route")
    )
    location = models.CharField(
        max_length=120,
        blank=True,
        help_text=_("Station or place, for fixed ones."),
        verbose_name=_("location"),
    )
    # A metro gate (闸机): "entry" or "exit", its ``location`` the station id of the fare rules.
    gate = models.CharField(
        max_length=5,
        blank=True,
        choices=[("entry", _("entry")), ("exit", _("exit"))],
        help_text=_("metro gates"),
        verbose_name=_("gate"),
    )
    status = models.CharField(
        max_length=10, choices=TerminalStatus.choices, default=TerminalStatus.ACTIVE, verbose_name=_("status")
    )
    status_reason = models.CharField(max_length=200, blank=True, verbose_name=_("status reason"))
    last_seq = models.BigIntegerField(
        null=True,
        blank=True,
        help_text=_("Highest terminal sequence received (gap detection; a tap above it cannot be a resend)."),
        verbose_name=_("last seq"),
    )
    registered_at = models.DateTimeField(auto_now_add=True, verbose_name=_("registered at"))
    registered_by = models.CharField(max_length=150, verbose_name=_("registered by"))

    class Meta:
        verbose_name = _("terminal")
        verbose_name_plural = _("terminals")
        ordering = ["terminal_id"]

    def __str__(self) -> str:
        return self.terminal_id

    @property
    def is_active(self) -> bool:
        return self.status == TerminalStatus.ACTIVE


class TerminalKey(models.Model):
    """An Ed25519 public key a terminal signs its batches with; a rotated-out key verifies until
    ``verify_until`` (the overlap window, so batches queued offline before the rotation still upload)."""

    terminal = models.ForeignKey(
        Terminal, on_delete=models.PROTECT, related_name="keys", verbose_name=_("terminal")
    )
    key_id = models.CharField(max_length=60, unique=True, verbose_name=_("key id"))
    version = models.PositiveIntegerField(verbose_name=_("version"))
    public_key = models.BinaryField(verbose_name=_("public key"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    retired_at = models.DateTimeField(null=True, blank=True, verbose_name=_("retired at"))
    verify_until = models.DateTimeField(null=True, blank=True, verbose_name=_("verify until"))

    class Meta:
        verbose_name = _("terminal key")
        verbose_name_plural = _("terminal keys")
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

    batch_id = models.CharField(max_length=80, unique=True, verbose_name=_("batch id"))
    terminal = models.ForeignKey(
        Terminal, on_delete=models.PROTECT, related_name="batches", verbose_name=_("terminal")
    )
    sha256 = models.CharField(
        max_length=64, help_text=_("SHA-256 of the canonical JSON of the payload."), verbose_name=_("sha256")
    )
    created_at = models.DateTimeField(
        help_text=_("The terminal's clock when it closed the batch."), verbose_name=_("created at")
    )
    received_at = models.DateTimeField(verbose_name=_("received at"))
    clock_skew_s = models.IntegerField(
        default=0, help_text=_("Terminal clock minus received time, seconds."), verbose_name=_("clock skew s")
    )
    rule_version = models.IntegerField(verbose_name=_("rule version"))
    hotlist_version = models.IntegerField(verbose_name=_("hotlist version"))
    tap_count = models.IntegerField(default=0, verbose_name=_("tap count"))
    accepted = models.IntegerField(default=0, verbose_name=_("accepted"))
    duplicates = models.IntegerField(default=0, verbose_name=_("duplicates"))
    rejected = models.IntegerField(default=0, verbose_name=_("rejected"))
    ack_parts = models.TextField(
        help_text=_(
            "The acknowledgement's received_at text, signature JSON and non-accepted outcomes (JSON)."
        ),
        verbose_name=_("ack parts"),
    )
    first_tx_id = models.BigIntegerField(
        null=True, blank=True, help_text=_("Lowest transaction id stored."), verbose_name=_("first tx id")
    )
    last_tx_id = models.BigIntegerField(
        null=True, blank=True, help_text=_("Highest transaction id stored."), verbose_name=_("last tx id")
    )
    verified_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the stored-data checks ran over its taps (None: not yet)."),
        verbose_name=_("verified at"),
    )

    class Meta:
        verbose_name = _("batch")
        verbose_name_plural = _("batches")
        ordering = ["-received_at"]
        indexes = [
            models.Index(fields=["id"], name="batch_unverified", condition=Q(verified_at__isnull=True))
        ]

    def __str__(self) -> str:
        return self.batch_id


class Routing(models.TextChoices):
    OWN = "own", _("Own card")
    ROAMING = "roaming", _("Roaming (clears with the issuer)")
    HELD = "held", _("Held as an exception")


class OutboxState(models.TextChoices):
    NONE = "", _("—")
    PENDING = "pending", _("Waiting for the interop outbox")
    SENT = "sent", _("In the interop outbox")


class Transaction(models.Model):
    """One tap or purchase (交易), stored in the month partition of ``tapped_at``.

    The database key is (id, tapped_at); Django addresses rows by ``id`` alone, which is unique.
    ``acquirer`` is the tenant that clears the tap (a county's terminals clear as its city).
    """

    id = models.BigAutoField(primary_key=True, verbose_name=_("id"))
    tapped_at = models.DateTimeField(verbose_name=_("tapped at"))
    received_at = models.DateTimeField(verbose_name=_("received at"))
    batch = models.ForeignKey(
        Batch, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", verbose_name=_("batch")
    )
    idx = models.IntegerField(help_text=_("Position in the batch."), verbose_name=_("idx"))
    terminal_id = models.CharField(max_length=40, verbose_name=_("terminal id"))
    terminal_seq = models.BigIntegerField(verbose_name=_("terminal seq"))
    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    issuer = models.CharField(max_length=6, verbose_name=_("issuer"))
    card_counter = models.BigIntegerField(verbose_name=_("card counter"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    balance_before_fen = models.BigIntegerField(verbose_name=_("balance before (fen)"))
    balance_after_fen = models.BigIntegerField(verbose_name=_("balance after (fen)"))
    service = models.CharField(max_length=20, verbose_name=_("service"))
    route = models.CharField(max_length=255, blank=True, verbose_name=_("route"))
    tac = models.CharField(max_length=64, verbose_name=_("tac"))
    terminal_no = models.CharField(
        max_length=12,
        help_text=_("The SAM's 6-byte terminal number (hex), part of what the TAC covers."),
        verbose_name=_("terminal no"),
    )
    algorithm = models.PositiveSmallIntegerField(
        help_text=_("The card's algorithm id: 4 SM4, 0 3DES."), verbose_name=_("algorithm")
    )
    kind = models.CharField(max_length=20, verbose_name=_("kind"))
    status = models.CharField(max_length=30, verbose_name=_("status"))
    card_scheme = models.CharField(max_length=40, blank=True, verbose_name=_("card scheme"))
    categories = ArrayField(
        models.CharField(max_length=30), default=list, blank=True, verbose_name=_("categories")
    )
    passes = ArrayField(
        models.CharField(max_length=30),
        default=list,
        blank=True,
        help_text=_("Transit passes on the card the fare was priced with (e.g. monthly)."),
        verbose_name=_("passes"),
    )
    fare_rule_id = models.CharField(max_length=60, blank=True, verbose_name=_("fare rule id"))
    card_trip = models.CharField(
        max_length=256,
        blank=True,
        default="",
        db_default="",
        help_text=_(
            "The transit record the card gave before the tap (hex): the journey the fare was priced from."
        ),
        verbose_name=_("card trip"),
    )
    code = models.CharField(
        max_length=1024,
        blank=True,
        default="",
        db_default="",
        help_text=_("A ride paid by the citizen code: the code the terminal scanned, checked again here."),
        verbose_name=_("citizen code"),
    )
    rule_version = models.IntegerField(verbose_name=_("rule version"))
    hotlist_version = models.IntegerField(verbose_name=_("hotlist version"))
    acquirer = models.CharField(max_length=30, verbose_name=_("acquirer"))
    routing = models.CharField(max_length=10, choices=Routing.choices, verbose_name=_("routing"))
    issuer_tenant = models.CharField(max_length=30, blank=True, verbose_name=_("issuer tenant"))
    network = models.CharField(max_length=20, blank=True, verbose_name=_("network"))
    outbox_state = models.CharField(
        max_length=10, choices=OutboxState.choices, blank=True, default="", verbose_name=_("outbox state")
    )

    class Meta:
        verbose_name = _("transaction")
        verbose_name_plural = _("transactions")
        db_table = "terminals_transaction"
        ordering = ["-tapped_at", "-id"]

    def __str__(self) -> str:
        return f"{self.card_no}#{self.card_counter}@{self.terminal_id}/{self.terminal_seq}"


class TapDay(models.Model):
    """The taps stored per Beijing day and routing (按日汇总), kept by the database itself: a statement-level
    trigger on ``terminals_transaction`` adds what each INSERT or COPY stored and takes off what a DELETE
    removed (migration 0012), so the city dashboard reads a few rows a day instead of every tap. A day's
    figures are split over ``shard`` rows (the writing backend's pid modulo 8) so concurrent uploads do not
    queue on one row; readers sum the shards."""

    day = models.DateField(verbose_name=_("day"))
    routing = models.CharField(max_length=10, choices=Routing.choices, verbose_name=_("routing"))
    shard = models.SmallIntegerField(verbose_name=_("shard"))
    taps = models.BigIntegerField(verbose_name=_("taps"))
    # numeric: a day's sum may pass bigint's range (a tap's amount may be any bigint; ingestion stores it).
    amount_fen = models.DecimalField(max_digits=40, decimal_places=0, verbose_name=_("amount (fen)"))

    class Meta:
        verbose_name = _("taps of a day")
        verbose_name_plural = _("taps per day")
        constraints = [models.UniqueConstraint(fields=["day", "routing", "shard"], name="tapday_key")]

    def __str__(self) -> str:
        return f"{self.day} {self.routing}: {self.taps}"


class ReviewFlag(models.Model):
    """A stored tap that someone should look at (待复核): counter gap, clock skew, fare mismatch…"""

    transaction_id = models.BigIntegerField(verbose_name=_("transaction id"))
    tapped_at = models.DateTimeField(verbose_name=_("tapped at"))
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="flags", verbose_name=_("batch"))
    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    code = models.CharField(max_length=40, verbose_name=_("code"))
    detail = models.JSONField(default=dict, verbose_name=_("detail"))
    created_at = models.DateTimeField(verbose_name=_("created at"))
    resolved_at = models.DateTimeField(null=True, blank=True, verbose_name=_("resolved at"))
    resolved_by = models.CharField(max_length=150, blank=True, verbose_name=_("resolved by"))
    note = models.CharField(max_length=300, blank=True, verbose_name=_("note"))

    class Meta:
        verbose_name = _("review flag")
        verbose_name_plural = _("review flags")
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
    HELD = "held", _("Held roaming tap (stored, not routed)")
    REJECTED = "rejected", _("Rejected tap (not stored as a transaction)")


class TapException(models.Model):
    """A tap that could not go its normal way (异常): a roaming tap held because its issuer is unknown or
    outside every shared network, or a tap refused at ingestion (kept raw, so nothing a terminal sent
    is lost)."""

    kind = models.CharField(max_length=10, choices=ExceptionKind.choices, verbose_name=_("kind"))
    reason = models.CharField(max_length=60, verbose_name=_("reason"))
    message = models.CharField(max_length=300, verbose_name=_("message"))
    batch = models.ForeignKey(
        Batch, on_delete=models.PROTECT, related_name="exceptions", verbose_name=_("batch")
    )
    idx = models.IntegerField(verbose_name=_("idx"))
    transaction_id = models.BigIntegerField(null=True, blank=True, verbose_name=_("transaction id"))
    tapped_at = models.DateTimeField(null=True, blank=True, verbose_name=_("tapped at"))
    card_no = models.CharField(max_length=40, blank=True, verbose_name=_("card no"))
    issuer = models.CharField(max_length=10, blank=True, verbose_name=_("issuer"))
    raw = models.JSONField(default=dict, blank=True, verbose_name=_("raw"))
    created_at = models.DateTimeField(verbose_name=_("created at"))
    resolved_at = models.DateTimeField(null=True, blank=True, verbose_name=_("resolved at"))
    resolved_by = models.CharField(max_length=150, blank=True, verbose_name=_("resolved by"))

    class Meta:
        verbose_name = _("tap exception")
        verbose_name_plural = _("tap exceptions")
        ordering = ["-created_at", "id"]
        indexes = [
            models.Index(fields=["kind", "reason"], name="tapexception_open", condition=Q(resolved_at=None))
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.reason} {self.card_no}"


class JourneyStatus(models.TextChoices):
    OPEN = "open", _("Open (entered, not yet exited)")
    COMPLETE = "complete", _("Complete")
    NO_ENTRY = "no_entry", _("No entry (penalty fare)")  # an exit the card had no entry for
    EXIT_ONLY = "exit_only", _("Exit only (entry not yet arrived)")  # its entry tap has not arrived (yet)


class Journey(models.Model):
    """A gated journey (进出站行程): a card's entry and exit taps paired at ingestion, in whichever order
    their batches arrive. The entry is named by what the exit read from the card (card, entry gate's
    terminal number, entry minute), so pairing is exact and idempotent."""

    key = models.CharField(
        max_length=80,
        unique=True,
        help_text=_("card:entry terminal no:entry Unix minute"),
        verbose_name=_("key"),
    )
    card_no = models.CharField(max_length=19, verbose_name=_("card number"))
    issuer = models.CharField(max_length=6, verbose_name=_("issuer"))
    line = models.CharField(max_length=255, blank=True, verbose_name=_("line"))
    origin = models.CharField(max_length=64, blank=True, verbose_name=_("entry station"))
    destination = models.CharField(max_length=64, blank=True, verbose_name=_("exit station"))
    entered_at = models.DateTimeField(null=True, blank=True, verbose_name=_("entered at"))
    exited_at = models.DateTimeField(null=True, blank=True, verbose_name=_("exited at"))
    entry_tx_id = models.BigIntegerField(null=True, blank=True, verbose_name=_("entry transaction id"))
    exit_tx_id = models.BigIntegerField(null=True, blank=True, verbose_name=_("exit transaction id"))
    entry_fen = models.BigIntegerField(default=0, verbose_name=_("charged at entry (fen)"))
    exit_fen = models.BigIntegerField(default=0, verbose_name=_("charged at exit (fen)"))
    routing = models.CharField(max_length=10, blank=True, choices=Routing.choices, verbose_name=_("routing"))
    status = models.CharField(max_length=10, choices=JourneyStatus.choices, verbose_name=_("status"))
    # A half journey released to clearing after the time-out (半程行程超时清算): the tap cleared alone; its
    # other half, if it ever arrives, clears alone too (docs/clearing.md, "Half journeys").
    released_at = models.DateTimeField(null=True, blank=True, verbose_name=_("half released at"))
    released_tx_id = models.BigIntegerField(null=True, blank=True, verbose_name=_("released transaction id"))

    class Meta:
        verbose_name = _("journey")
        verbose_name_plural = _("journeys")
        indexes = [
            models.Index(fields=["card_no", "entered_at"], name="journey_card_idx"),
            # what the half-journey release looks at: the halves not yet released (a few, of millions)
            models.Index(
                fields=["id"],
                name="journey_half_idx",
                # status = … OR status = …, not IN (…): the template's definition must read back the same
                # when a tenant's schema is cloned from it (an IN list over varchar does not)
                condition=Q(released_at__isnull=True) & (Q(status="open") | Q(status="exit_only")),
            ),
            # the halves released lately, newest first (the city dashboard)
            models.Index(
                fields=["-released_at"], name="journey_released_idx", condition=Q(released_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card_no} {self.origin or '?'} -> {self.destination or '…'}"

    @property
    def fare_fen(self) -> int:
        return self.entry_fen + self.exit_fen


class CodeNonce(models.Model):
    """A citizen code spent on a ride (电子市民码), by its issuer and nonce: the back office books a code
    once across every terminal and every city. ``claimed_by`` is what spent it first: ``tap:<transaction
    id>`` here (the acquirer's verification stage), or ``record:<clearing record id>`` when this tenant
    issued the code and validated a ride taken with it in another city."""

    issuer = models.CharField(max_length=30, verbose_name=_("issuer"))
    nonce = models.CharField(max_length=64, verbose_name=_("nonce"))
    claimed_by = models.CharField(max_length=100, verbose_name=_("claimed by"))
    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    claimed_at = models.DateTimeField(verbose_name=_("claimed at"))

    class Meta:
        verbose_name = _("spent citizen code")
        verbose_name_plural = _("spent citizen codes")
        constraints = [models.UniqueConstraint(fields=["issuer", "nonce"], name="terminals_codenonce_once")]
        indexes = [models.Index(fields=["claimed_at"], name="codenonce_claimed_at")]

    def __str__(self) -> str:
        return f"{self.issuer}:{self.nonce}"

"""Interop data, in the public schema: agreements, received messages, clearing cycles and records,
netting results, the settlement ledger, reconciliation files and disputes (docs/clearing.md)."""

from __future__ import annotations

import datetime as dt
import zlib

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from citycard.platform.models import ClearingService, RoamingNetwork

Service = ClearingService  # defined with the platform: the tenants' books of a settled cycle name it too


class CyclePeriod(models.TextChoices):
    DAILY = "daily", _("Daily")
    MONTHLY = "monthly", _("Monthly")


class VisitorPolicy(models.TextChoices):
    LOCAL_FARE = "local_fare", _("Visitors pay the acquirer's standard fare")
    LOCAL_DISCOUNTS = "local_discounts", _("Visitors get the acquirer's card discounts")
    HOME_CATEGORIES = "home_categories", _("Visitors' home categories (elderly, student…) honoured")


class RoamingAgreement(models.Model):
    """What roams in a network for one service, and how it is cleared (漫游协议): the standing terms. What
    changes over time — fees, visitor policy, cut-off, hotlist grace — is in its dated versions
    (``AgreementVersion``); a record is priced and cleared by the version in force on its business date."""

    network = models.ForeignKey(
        RoamingNetwork, on_delete=models.PROTECT, related_name="agreements", verbose_name=_("network")
    )
    service = models.CharField(max_length=10, choices=Service.choices, verbose_name=_("service"))
    operator = models.SlugField(
        max_length=30,
        help_text=_("The network operator as a settlement participant (e.g. yrd-operator)."),
        verbose_name=_("operator"),
    )
    period = models.CharField(
        max_length=10, choices=CyclePeriod.choices, default=CyclePeriod.DAILY, verbose_name=_("period")
    )
    settlement_lag_days = models.PositiveIntegerField(
        default=1, help_text=_("T+n settlement."), verbose_name=_("settlement lag days")
    )
    dispute_window_days = models.PositiveIntegerField(default=30, verbose_name=_("dispute window days"))
    valid_from = models.DateField(verbose_name=_("valid from"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("roaming agreement")
        verbose_name_plural = _("roaming agreements")
        ordering = ["network__code", "service"]
        constraints = [
            models.UniqueConstraint(fields=["network", "service"], name="agreement_one_per_service"),
        ]

    def __str__(self) -> str:
        return f"{self.network.code}/{self.service}"

    @property
    def label(self) -> str:
        """``yrd-transit``: how documents and traces name the agreement."""
        return f"{self.network.code}-{self.service}"

    @property
    def settlement_account(self) -> str:
        return f"{self.network.code}-settlement"

    def versions_ordered(self) -> list[AgreementVersion]:
        """Its versions by effective date, then number (read once per instance)."""
        cached = getattr(self, "_versions_ordered", None)
        if cached is None:
            # .all() reads a prefetch when there is one.
            versions = sorted(self.versions.all(), key=lambda v: (v.effective_from, v.number))
            cached = self._versions_ordered = versions
        return cached

    def versions_forget(self) -> None:
        self.__dict__.pop("_versions_ordered", None)

    def version_on(self, day: dt.date) -> AgreementVersion | None:
        """The version in force on business date ``day``: the latest effective on or before it (of two
        effective the same day, the higher number); None before the first."""
        in_force = None
        for version in self.versions_ordered():
            if version.effective_from > day:
                break
            in_force = version
        return in_force


class AgreementVersion(models.Model):
    """One dated version of an agreement's terms (协议版本), in force from ``effective_from`` (a business
    date) until the next version's. Never changed once written: a change is a new version
    (``services.agreement_version_add``)."""

    agreement = models.ForeignKey(
        RoamingAgreement, on_delete=models.PROTECT, related_name="versions", verbose_name=_("agreement")
    )
    number = models.PositiveIntegerField(
        help_text=_("1, 2, 3… per agreement, in the order they were added."), verbose_name=_("number")
    )
    effective_from = models.DateField(
        help_text=_("The first business date it prices and clears."), verbose_name=_("effective from")
    )
    visitor_policy = models.CharField(
        max_length=20,
        choices=VisitorPolicy.choices,
        default="local_discounts",
        verbose_name=_("visitor policy"),
    )
    issuer_fee_bps = models.PositiveIntegerField(
        default=0,
        help_text=_("Interchange the issuer keeps from what it owes the acquirer, basis points."),
        verbose_name=_("issuer fee (basis points)"),
    )
    network_fee_bps = models.PositiveIntegerField(
        default=0,
        help_text=_("The network operator's fee, borne by the acquirer, basis points."),
        verbose_name=_("network fee (basis points)"),
    )
    cut_off = models.TimeField(
        default=dt.time(4, 0),
        help_text=_("Asia/Shanghai. Business date D runs from D cut_off to D+1 cut_off."),
        verbose_name=_("cut off"),
    )
    hotlist_grace_minutes = models.PositiveIntegerField(default=60, verbose_name=_("hotlist grace minutes"))
    note = models.CharField(
        max_length=200,
        blank=True,
        help_text=_("Why it changed (the decision, in words)."),
        verbose_name=_("note"),
    )
    created_at = models.DateTimeField(verbose_name=_("created at"))
    created_by = models.CharField(max_length=150, verbose_name=_("created by"))

    class Meta:
        verbose_name = _("agreement version")
        verbose_name_plural = _("agreement versions")
        ordering = ["agreement_id", "effective_from", "number"]
        constraints = [
            models.UniqueConstraint(fields=["agreement", "number"], name="agreement_version_unique"),
            models.CheckConstraint(
                name="agreement_version_fees_below_100pct",
                condition=Q(issuer_fee_bps__lte=10000) & Q(network_fee_bps__lte=10000),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agreement} v{self.number} from {self.effective_from}"

    @property
    def label(self) -> str:
        """``yrd-transit v2``: the agreement and this version, as a quote's trace names it."""
        return f"{self.agreement.label} v{self.number}"


class ReceivedMessage(models.Model):
    """Every envelope interop accepted, by (sender, message id): the idempotency memory (Mojaloop-style:
    same id + same body → the earlier result; same id, other body → conflict)."""

    sender = models.CharField(max_length=30, verbose_name=_("sender"))
    message_id = models.CharField(max_length=120, verbose_name=_("message id"))
    kind = models.CharField(max_length=40, verbose_name=_("kind"))
    body_sha256 = models.CharField(max_length=64, verbose_name=_("body sha256"))
    key_id = models.CharField(max_length=60, verbose_name=_("key id"))
    received_at = models.DateTimeField(verbose_name=_("received at"))
    result = models.JSONField(default=dict, verbose_name=_("result"))

    class Meta:
        verbose_name = _("received message")
        verbose_name_plural = _("received messages")
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["sender", "message_id"], name="received_unique")]


class SeenNonce(models.Model):
    """One transmission of an envelope; the same nonce twice is a replay."""

    sender = models.CharField(max_length=30, verbose_name=_("sender"))
    nonce = models.CharField(max_length=64, verbose_name=_("nonce"))
    message_id = models.CharField(max_length=120, verbose_name=_("message id"))
    seen_at = models.DateTimeField(verbose_name=_("seen at"))

    class Meta:
        verbose_name = _("seen nonce")
        verbose_name_plural = _("seen nonces")
        constraints = [models.UniqueConstraint(fields=["sender", "nonce"], name="nonce_unique")]


class MessageRefusal(models.Model):
    """An envelope refused, and why (also in the platform's audit chain)."""

    sender = models.CharField(max_length=30, blank=True, verbose_name=_("sender"))
    message_id = models.CharField(max_length=120, blank=True, verbose_name=_("message id"))
    kind = models.CharField(max_length=40, blank=True, verbose_name=_("kind"))
    code = models.CharField(max_length=30, verbose_name=_("code"))
    message = models.CharField(max_length=400, verbose_name=_("message"))
    refused_at = models.DateTimeField(verbose_name=_("refused at"))

    class Meta:
        verbose_name = _("message refusal")
        verbose_name_plural = _("message refusals")
        ordering = ["-id"]


class CycleState(models.TextChoices):
    OPEN = "open", _("Open")
    CLOSED = "closed", _("Closed (cut off)")
    VALIDATED = "validated", _("Validated by the issuers")
    NETTED = "netted", _("Netted")
    SETTLED = "settled", _("Settled")
    DISPUTED = "disputed", _("Settled, with open disputes")


class ClearingCycle(models.Model):
    """One clearing cycle of an agreement: a business date (daily) or a month (monthly, first day)."""

    agreement = models.ForeignKey(
        RoamingAgreement, on_delete=models.PROTECT, related_name="cycles", verbose_name=_("agreement")
    )
    business_date = models.DateField(verbose_name=_("business date"))
    opens_at = models.DateTimeField(verbose_name=_("opens at"))
    cut_off_at = models.DateTimeField(verbose_name=_("cut off at"))
    state = models.CharField(
        max_length=10, choices=CycleState.choices, default=CycleState.OPEN, verbose_name=_("state")
    )
    closed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("closed at"))
    validated_at = models.DateTimeField(null=True, blank=True, verbose_name=_("validated at"))
    netted_at = models.DateTimeField(null=True, blank=True, verbose_name=_("netted at"))
    settled_at = models.DateTimeField(null=True, blank=True, verbose_name=_("settled at"))
    validation_checks = models.JSONField(
        default=dict, blank=True, help_text=_("Checks each issuer ran."), verbose_name=_("validation checks")
    )
    # By the clock, unlike the ``*_at`` above (the business time each step was given, ``--now``): what the
    # resume sweep measures a cycle's age from (``services.cycles.cycles_resume_claim``).
    progressed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When a step last moved the cycle on (wall clock)."),
        verbose_name=_("progressed at"),
    )
    resumed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the resume sweep last sent the cycle's processing again."),
        verbose_name=_("resumed at"),
    )
    resumes = models.PositiveIntegerField(
        default=0, help_text=_("How often the resume sweep sent it again."), verbose_name=_("resumes")
    )

    class Meta:
        verbose_name = _("clearing cycle")
        verbose_name_plural = _("clearing cycles")
        ordering = ["agreement_id", "business_date"]
        constraints = [
            models.UniqueConstraint(fields=["agreement", "business_date"], name="cycle_unique_date"),
        ]

    def __str__(self) -> str:
        return f"{self.agreement} {self.business_date} ({self.state})"

    @property
    def label(self) -> str:
        """``yrd-transit-2026-11-21``: how messages, files, audit entries and traces name the cycle (read
        with its agreement and network)."""
        return f"{self.agreement.network.code}-{self.agreement.service}-{self.business_date.isoformat()}"


class IssuerValidation(models.Model):
    """One issuer's answer for a closed cycle, kept until the cycle's validation step applies it: what a
    per-issuer task (``interop.tasks.issuer_validation``) found, so the step joins the answers instead of
    asking every issuer itself. Written once per cycle and issuer (a retry finds it and does nothing)."""

    cycle = models.ForeignKey(
        ClearingCycle, on_delete=models.PROTECT, related_name="issuer_validations", verbose_name=_("cycle")
    )
    issuer = models.CharField(max_length=30, verbose_name=_("issuer"))
    checks = models.JSONField(help_text=_("The checks the issuer ran."), verbose_name=_("checks"))
    rejected = models.JSONField(
        help_text=_("Its rejections: record id, reason, message, acquirer, amount."),
        verbose_name=_("rejected"),
    )
    validated_at = models.DateTimeField(verbose_name=_("validated at"))

    class Meta:
        verbose_name = _("issuer validation")
        verbose_name_plural = _("issuer validations")
        ordering = ["cycle_id", "issuer"]
        constraints = [
            models.UniqueConstraint(fields=["cycle", "issuer"], name="issuer_validation_once"),
        ]

    def __str__(self) -> str:
        return f"{self.cycle_id}/{self.issuer}"


class RecordStatus(models.TextChoices):
    PENDING = "pending", _("Awaiting issuer validation")
    VALID = "valid", _("Valid")
    REJECTED = "rejected", _("Rejected by the issuer (exception)")


# Validation writes only the rejections: a record still stored ``pending`` in a cycle the issuers have
# validated was not rejected, so it is valid. Everything that reads a status reads it through
# ``record_status`` / ``ClearingRecord.status_in`` (docs/clearing.md, "Issuer validation").
VALIDATED_CYCLE_STATES = ("validated", "netted", "settled", "disputed")


def record_status() -> models.Case:
    """A record's status as read (pending, valid, rejected), from its stored status and its cycle's state."""
    return models.Case(
        models.When(
            status=RecordStatus.PENDING,
            cycle__state__in=VALIDATED_CYCLE_STATES,
            then=models.Value(RecordStatus.VALID.value),
        ),
        default=models.F("status"),
        output_field=models.CharField(),
    )


class ClearingRecordQuerySet(models.QuerySet):
    def with_status(self) -> ClearingRecordQuerySet:
        """Annotated with ``current_status``: the status as read (see ``record_status``)."""
        return self.annotate(current_status=record_status())

    def valid(self) -> ClearingRecordQuerySet:
        return self.with_status().filter(current_status=RecordStatus.VALID)


class RecordKind(models.TextChoices):
    TAP = "tap", _("Roaming tap")
    ADJUSTMENT = "adjustment", _("Adjustment from a dispute")
    CLAIM = "claim", _("Medical claim: the fund share the insured place owes the treatment place")


class ClearingRecord(models.Model):
    """One record to clear: what the issuer owes the acquirer for one roaming tap (清算记录), with its
    fees computed when it was accepted (basis points, half-up per record)."""

    # Unique by a constraint, not ``unique=True``: that would add a second, varchar_pattern_ops index that
    # nothing uses, maintained on every insert. The cycle is indexed by record_cycle_idx (its first column).
    record_id = models.CharField(max_length=60, verbose_name=_("record id"))
    cycle = models.ForeignKey(
        ClearingCycle,
        on_delete=models.PROTECT,
        related_name="records",
        db_index=False,
        verbose_name=_("cycle"),
    )
    kind = models.CharField(
        max_length=12, choices=RecordKind.choices, default=RecordKind.TAP, verbose_name=_("kind")
    )
    message_id = models.CharField(
        max_length=120, help_text=_("The envelope it came in."), verbose_name=_("message id")
    )
    acquirer = models.CharField(max_length=30, verbose_name=_("acquirer"))
    issuer = models.CharField(max_length=30, verbose_name=_("issuer"))
    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    card_counter = models.BigIntegerField(verbose_name=_("card counter"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    issuer_fee_fen = models.BigIntegerField(verbose_name=_("issuer fee (fen)"))
    network_fee_fen = models.BigIntegerField(verbose_name=_("network fee (fen)"))
    accepted_at = models.DateTimeField(
        help_text=_("When the acquirer's terminal accepted the tap."), verbose_name=_("accepted at")
    )
    received_at = models.DateTimeField(verbose_name=_("received at"))
    # As written: ``rejected`` by validation, ``valid`` for records that need no issuer validation
    # (adjustments, adjudicated claims), else ``pending`` — read it through ``status_in``/``with_status``.
    status = models.CharField(
        max_length=10, choices=RecordStatus.choices, default=RecordStatus.PENDING, verbose_name=_("status")
    )
    reason = models.CharField(max_length=40, blank=True, verbose_name=_("reason"))
    reason_message = models.CharField(max_length=300, blank=True, verbose_name=_("reason message"))
    adjusts = models.CharField(
        max_length=60,
        blank=True,
        help_text=_("The record an adjustment reverses."),
        verbose_name=_("adjusts"),
    )
    data = models.JSONField(
        default=dict, help_text=_("The record as the acquirer signed it."), verbose_name=_("data")
    )

    objects = ClearingRecordQuerySet.as_manager()

    class Meta:
        verbose_name = _("clearing record")
        verbose_name_plural = _("clearing records")
        ordering = ["cycle_id", "record_id"]
        indexes = [
            # Not on status: marking a rejection stays a HOT update when the page has room.
            models.Index(fields=["cycle", "issuer", "acquirer"], name="record_cycle_idx"),
            # The exceptions (a few of a cycle's records): the console's exception pages and charts read
            # them without scanning the cycle. Only a rejection's update leaves the heap-only path.
            models.Index(
                fields=["cycle", "reason", "issuer", "acquirer"],
                name="record_rejected_idx",
                condition=models.Q(status="rejected"),
            ),
        ]
        constraints = [models.UniqueConstraint(fields=["record_id"], name="record_id_unique")]

    def __str__(self) -> str:
        return self.record_id

    def status_in(self, cycle_state: str) -> str:
        """The status as read, given the state of the record's cycle (see ``record_status``)."""
        if self.status == RecordStatus.PENDING and cycle_state in VALIDATED_CYCLE_STATES:
            return RecordStatus.VALID
        return self.status


# A cell's id in the matrix view: its row's id × CELL_ID_BASE + its place in the row (from 1), so a row holds
# fewer than CELL_ID_BASE acquirers (a check on the rows) and the cell's row is ``id // CELL_ID_BASE``.
CELL_ID_BASE = 100_000


class MatrixRow(models.Model):
    """An issuer's row of a cycle's bilateral matrix (双边轧差矩阵的一行): its acquirers and, in the same
    order, each cell's figures (valid records only), as arrays. This is how the matrix is stored: a national
    network's cycle has ~90,000 cells but 300 rows, which netting writes in the statement that aggregates the
    records (a row and an index entry per issuer rather than per cell). The cells are read through
    ``BilateralPosition``, a view that unnests the rows (docs/clearing.md, "Netting and settlement")."""

    cycle = models.ForeignKey(
        ClearingCycle, on_delete=models.PROTECT, related_name="matrix_rows", verbose_name=_("cycle")
    )
    issuer = models.CharField(max_length=30, verbose_name=_("issuer"))
    acquirers = ArrayField(models.CharField(max_length=30), verbose_name=_("acquirers"))
    records = ArrayField(models.BigIntegerField(), verbose_name=_("record counts"))
    amount_fen = ArrayField(models.BigIntegerField(), verbose_name=_("amounts (fen)"))
    issuer_fee_fen = ArrayField(models.BigIntegerField(), verbose_name=_("issuer fees (fen)"))
    network_fee_fen = ArrayField(models.BigIntegerField(), verbose_name=_("network fees (fen)"))

    class Meta:
        verbose_name = _("bilateral matrix row")
        verbose_name_plural = _("bilateral matrix rows")
        ordering = ["cycle_id", "issuer"]
        constraints = [
            models.UniqueConstraint(fields=["cycle", "issuer"], name="matrixrow_unique"),
            # Every array has a figure per acquirer, and the cells' ids stay apart (``CELL_ID_BASE``).
            models.CheckConstraint(
                name="matrixrow_cells_aligned",
                condition=Q(acquirers__len__lt=CELL_ID_BASE)
                & Q(records__len=models.F("acquirers__len"))
                & Q(amount_fen__len=models.F("acquirers__len"))
                & Q(issuer_fee_fen__len=models.F("acquirers__len"))
                & Q(network_fee_fen__len=models.F("acquirers__len")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cycle_id} {self.issuer}"


class BilateralPosition(models.Model):
    """Issuer × acquirer in a cycle (双边轧差矩阵): valid records only.

    A view over the stored rows (``MatrixRow``, one per issuer, unnested: a cell per acquirer), read like a
    table by every reader of the matrix (ORM, admin, the SQL of reconciliation and the console); netting
    writes the rows, never the cells. A lookup by cycle (and issuer) reads the cycle's rows through their
    unique index. ``id`` is the row's id × ``CELL_ID_BASE`` + the cell's place in the row."""

    id = models.BigIntegerField(primary_key=True, verbose_name=_("cell id"))
    row = models.ForeignKey(
        MatrixRow,
        on_delete=models.DO_NOTHING,
        related_name="cells",
        verbose_name=_("row"),
        db_constraint=False,
    )
    cycle = models.ForeignKey(
        ClearingCycle,
        on_delete=models.PROTECT,
        related_name="bilateral",
        verbose_name=_("cycle"),
        db_constraint=False,
        db_index=False,
    )
    issuer = models.CharField(max_length=30, verbose_name=_("issuer"))
    acquirer = models.CharField(max_length=30, verbose_name=_("acquirer"))
    records = models.BigIntegerField(verbose_name=_("record count"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    issuer_fee_fen = models.BigIntegerField(verbose_name=_("issuer fee (fen)"))
    network_fee_fen = models.BigIntegerField(verbose_name=_("network fee (fen)"))
    acquirer_due_fen = models.BigIntegerField(
        help_text=_("amount − issuer fee − network fee"), verbose_name=_("acquirer due (fen)")
    )

    class Meta:
        managed = False  # the view interop_bilateralposition (migration 0020)
        db_table = "interop_bilateralposition"
        verbose_name = _("bilateral position")
        verbose_name_plural = _("bilateral positions")
        ordering = ["cycle_id", "issuer", "acquirer"]


class MatrixPicture(models.Model):
    """A settled cycle's bilateral matrix as the console draws it (矩阵热力图): the axes with their totals and
    the heat map's points as JSON text, written once at settlement from the matrix (which never changes
    after netting), so a 300-participant cycle's page reads one row rather than aggregating 89,700 cells at
    every view (``selectors.bilateral_matrix_points``)."""

    cycle = models.OneToOneField(
        ClearingCycle,
        on_delete=models.PROTECT,
        primary_key=True,
        related_name="matrix_picture",
        verbose_name=_("cycle"),
    )
    acquirers = models.JSONField(
        help_text=_("[code, records, amount_fen] by code."), verbose_name=_("acquirers")
    )
    issuers = models.JSONField(help_text=_("[code, records, amount_fen] by code."), verbose_name=_("issuers"))
    points_json = models.TextField(
        help_text=_("[[acquirer index, issuer index, amount_fen, records], …] as JSON text."),
        verbose_name=_("heat map points"),
    )
    largest = models.JSONField(
        help_text=_("The largest cells by amount: [{issuer, acquirer, records, amount_fen}, …]."),
        verbose_name=_("largest flows"),
    )

    class Meta:
        verbose_name = _("matrix picture")
        verbose_name_plural = _("matrix pictures")


class NetPosition(models.Model):
    """A participant's multilateral net position in a cycle (多边净额); Σ net = 0 per cycle, checked by a
    deferred constraint trigger."""

    cycle = models.ForeignKey(
        ClearingCycle, on_delete=models.PROTECT, related_name="positions", verbose_name=_("cycle")
    )
    participant = models.CharField(max_length=30, verbose_name=_("participant"))
    receivable_fen = models.BigIntegerField(verbose_name=_("receivable (fen)"))
    payable_fen = models.BigIntegerField(verbose_name=_("payable (fen)"))
    net_fen = models.BigIntegerField(verbose_name=_("net (fen)"))

    class Meta:
        verbose_name = _("net position")
        verbose_name_plural = _("net positions")
        ordering = ["cycle_id", "participant"]
        constraints = [
            models.UniqueConstraint(fields=["cycle", "participant"], name="netposition_unique"),
            models.CheckConstraint(
                name="netposition_net_is_difference",
                condition=Q(net_fen=models.F("receivable_fen") - models.F("payable_fen")),
            ),
        ]


class SettlementInstruction(models.Model):
    """Who pays whom (结算指令): net debtors pay the network's settlement account, which pays creditors."""

    cycle = models.ForeignKey(
        ClearingCycle, on_delete=models.PROTECT, related_name="instructions", verbose_name=_("cycle")
    )
    payer = models.CharField(max_length=40, verbose_name=_("payer"))
    payee = models.CharField(max_length=40, verbose_name=_("payee"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    value_date = models.DateField(verbose_name=_("value date"))

    class Meta:
        verbose_name = _("settlement instruction")
        verbose_name_plural = _("settlement instructions")
        ordering = ["cycle_id", "id"]
        constraints = [models.CheckConstraint(name="instruction_positive", condition=Q(amount_fen__gt=0))]


class Journal(models.Model):
    """A ledger journal (记账凭证); its postings sum to zero (deferred constraint trigger)."""

    cycle = models.ForeignKey(
        ClearingCycle, on_delete=models.PROTECT, related_name="journals", verbose_name=_("cycle")
    )
    kind = models.CharField(max_length=20, verbose_name=_("kind"))
    memo = models.CharField(max_length=200, verbose_name=_("memo"))
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("journal")
        verbose_name_plural = _("journals")
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["cycle", "kind"], name="journal_once_per_cycle")]


class Posting(models.Model):
    journal = models.ForeignKey(
        Journal, on_delete=models.PROTECT, related_name="postings", verbose_name=_("journal")
    )
    account = models.CharField(max_length=60, verbose_name=_("account"))
    amount_fen = models.BigIntegerField(
        help_text=_("Debit positive, credit negative."), verbose_name=_("amount (fen)")
    )

    class Meta:
        verbose_name = _("posting")
        verbose_name_plural = _("postings")
        ordering = ["journal_id", "id"]


class ReconciliationFile(models.Model):
    """A participant's reconciliation file for a cycle (对账文件), and its confirmation."""

    cycle = models.ForeignKey(
        ClearingCycle, on_delete=models.PROTECT, related_name="reconciliations", verbose_name=_("cycle")
    )
    participant = models.CharField(max_length=30, verbose_name=_("participant"))
    # The CSV's UTF-8, zlib-compressed (level 1) where it is written: ~6× smaller, and PostgreSQL stores it
    # as it is (STORAGE EXTERNAL, migration 0009) instead of compressing 10 MB per file in the step.
    csv_zlib = models.BinaryField(verbose_name=_("csv zlib"))
    sha256 = models.CharField(
        max_length=64,
        help_text=_("SHA-256 of the CSV's UTF-8 (not of the compressed)."),
        verbose_name=_("sha256"),
    )
    totals = models.JSONField(verbose_name=_("totals"))
    message_id = models.CharField(max_length=120, verbose_name=_("message id"))
    state = models.CharField(
        max_length=10, default="sent", verbose_name=_("state")
    )  # sent, confirmed, mismatch
    answer = models.JSONField(default=dict, blank=True, verbose_name=_("answer"))
    answered_at = models.DateTimeField(null=True, blank=True, verbose_name=_("answered at"))

    class Meta:
        verbose_name = _("reconciliation file")
        verbose_name_plural = _("reconciliation files")
        ordering = ["cycle_id", "participant"]
        constraints = [
            models.UniqueConstraint(fields=["cycle", "participant"], name="reconciliation_unique"),
        ]

    @property
    def csv(self) -> str:
        """The file's text (format in docs/clearing.md)."""
        return zlib.decompress(bytes(self.csv_zlib)).decode()


class DisputeState(models.TextChoices):
    OPEN = "open", _("Open")
    ACCEPTED = "accepted", _("Accepted (adjusted in a later cycle)")
    REJECTED = "rejected", _("Rejected")


class Dispute(models.Model):
    record = models.ForeignKey(
        ClearingRecord, on_delete=models.PROTECT, related_name="disputes", verbose_name=_("record")
    )
    raised_by = models.CharField(max_length=30, verbose_name=_("raised by"))
    reason = models.CharField(max_length=300, verbose_name=_("reason"))
    raised_at = models.DateTimeField(verbose_name=_("raised at"))
    state = models.CharField(
        max_length=10, choices=DisputeState.choices, default=DisputeState.OPEN, verbose_name=_("state")
    )
    resolution = models.CharField(max_length=300, blank=True, verbose_name=_("resolution"))
    resolved_at = models.DateTimeField(null=True, blank=True, verbose_name=_("resolved at"))
    resolved_by = models.CharField(max_length=150, blank=True, verbose_name=_("resolved by"))
    adjustment = models.ForeignKey(
        ClearingRecord,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("adjustment"),
    )

    class Meta:
        verbose_name = _("dispute")
        verbose_name_plural = _("disputes")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["record"], condition=Q(state="open"), name="dispute_one_open_per_record"
            )
        ]


class NetworkHotlist(models.Model):
    """The network hotlist's head (网络黑名单): the union of the members' hotlists, versioned."""

    network = models.OneToOneField(
        RoamingNetwork, on_delete=models.PROTECT, related_name="hotlist", verbose_name=_("network")
    )
    version = models.PositiveIntegerField(default=0, verbose_name=_("version"))
    changed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("changed at"))

    class Meta:
        verbose_name = _("network hotlist")
        verbose_name_plural = _("network hotlists")


class NetworkHotlistEntry(models.Model):
    """A card on a network's hotlist from ``version_added`` until ``version_removed`` (if it was removed)."""

    network = models.ForeignKey(
        RoamingNetwork, on_delete=models.PROTECT, related_name="hotlist_entries", verbose_name=_("network")
    )
    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    issuer = models.CharField(max_length=30, verbose_name=_("issuer"))
    version_added = models.PositiveIntegerField(verbose_name=_("version added"))
    version_removed = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("version removed"))

    class Meta:
        verbose_name = _("network hotlist entry")
        verbose_name_plural = _("network hotlist entries")
        ordering = ["network_id", "card_no"]
        constraints = [
            models.UniqueConstraint(
                fields=["network", "card_no"],
                condition=Q(version_removed__isnull=True),
                name="network_hotlist_one_live_entry",
            )
        ]
        indexes = [models.Index(fields=["network", "version_added"], name="nhl_added_idx")]


class MemberHotlist(models.Model):
    """The version of a member's own hotlist the platform has applied (deltas must follow it)."""

    tenant = models.CharField(max_length=30, unique=True, verbose_name=_("tenant"))
    version = models.PositiveIntegerField(verbose_name=_("version"))
    applied_at = models.DateTimeField(verbose_name=_("applied at"))

    class Meta:
        verbose_name = _("member hotlist")
        verbose_name_plural = _("member hotlists")


class HotlistDelivery(models.Model):
    """The network hotlist version last delivered to a tenant's inbox (the next delivery is a delta)."""

    network = models.ForeignKey(
        RoamingNetwork, on_delete=models.PROTECT, related_name="+", verbose_name=_("network")
    )
    tenant = models.CharField(max_length=30, verbose_name=_("tenant"))
    version = models.PositiveIntegerField(verbose_name=_("version"))

    class Meta:
        verbose_name = _("hotlist delivery")
        verbose_name_plural = _("hotlist deliveries")
        constraints = [models.UniqueConstraint(fields=["network", "tenant"], name="hotlist_delivery_unique")]


class EntitlementRecognition(models.Model):
    """An entitlement type the members of a roaming network recognise for each other's cardholders (权益互认),
    e.g. elderly free entry to parks across the Yangtze Delta: a visitor holding ``type_code`` at home is
    admitted where the local type of the same code is accepted, on the home tenant's signed answer."""

    network = models.ForeignKey(
        RoamingNetwork,
        on_delete=models.PROTECT,
        related_name="entitlement_recognitions",
        verbose_name=_("roaming network"),
    )
    type_code = models.SlugField(max_length=40, verbose_name=_("entitlement type code"))
    valid_from = models.DateField(verbose_name=_("valid from"))
    note = models.CharField(max_length=200, blank=True, verbose_name=_("note"))
    created_at = models.DateTimeField(verbose_name=_("created at"))
    created_by = models.CharField(max_length=150, verbose_name=_("created by"))

    class Meta:
        verbose_name = _("entitlement recognition")
        verbose_name_plural = _("entitlement recognitions")
        ordering = ["network__code", "type_code"]
        constraints = [
            models.UniqueConstraint(fields=["network", "type_code"], name="entitlement_recognition_once"),
        ]

    def __str__(self) -> str:
        return f"{self.network.code}: {self.type_code}"

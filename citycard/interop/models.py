"""Interop data, in the public schema: agreements, received messages, clearing cycles and records,
netting results, the settlement ledger, reconciliation files and disputes (docs/clearing.md)."""

from __future__ import annotations

import datetime as dt
import zlib

from django.db import models
from django.db.models import Q

from citycard.platform.models import RoamingNetwork


class Service(models.TextChoices):
    TRANSIT = "transit", "Transit (交通)"
    MEDICAL = "medical", "Medical (异地就医)"


class CyclePeriod(models.TextChoices):
    DAILY = "daily", "Daily"
    MONTHLY = "monthly", "Monthly"


class VisitorPolicy(models.TextChoices):
    LOCAL_FARE = "local_fare", "Visitors pay the acquirer's standard fare"
    LOCAL_DISCOUNTS = "local_discounts", "Visitors get the acquirer's card discounts"
    HOME_CATEGORIES = "home_categories", "Visitors' home categories (elderly, student…) honoured"


class RoamingAgreement(models.Model):
    """What roams in a network for one service, and how it is cleared (漫游协议): the standing terms. What
    changes over time — fees, visitor policy, cut-off, hotlist grace — is in its dated versions
    (``AgreementVersion``); a record is priced and cleared by the version in force on its business date."""

    network = models.ForeignKey(RoamingNetwork, on_delete=models.PROTECT, related_name="agreements")
    service = models.CharField(max_length=10, choices=Service.choices)
    operator = models.SlugField(
        max_length=30, help_text="The network operator as a settlement participant (e.g. yrd-operator)."
    )
    period = models.CharField(max_length=10, choices=CyclePeriod.choices, default=CyclePeriod.DAILY)
    settlement_lag_days = models.PositiveIntegerField(default=1, help_text="T+n settlement.")
    dispute_window_days = models.PositiveIntegerField(default=30)
    valid_from = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
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

    agreement = models.ForeignKey(RoamingAgreement, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField(help_text="1, 2, 3… per agreement, in the order they were added.")
    effective_from = models.DateField(help_text="The first business date it prices and clears.")
    visitor_policy = models.CharField(max_length=20, choices=VisitorPolicy.choices, default="local_discounts")
    issuer_fee_bps = models.PositiveIntegerField(
        default=0, help_text="Interchange the issuer keeps from what it owes the acquirer, basis points."
    )
    network_fee_bps = models.PositiveIntegerField(
        default=0, help_text="The network operator's fee, borne by the acquirer, basis points."
    )
    cut_off = models.TimeField(
        default=dt.time(4, 0), help_text="Asia/Shanghai. Business date D runs from D cut_off to D+1 cut_off."
    )
    hotlist_grace_minutes = models.PositiveIntegerField(default=60)
    note = models.CharField(max_length=200, blank=True, help_text="Why it changed (the decision, in words).")
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)

    class Meta:
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

    sender = models.CharField(max_length=30)
    message_id = models.CharField(max_length=120)
    kind = models.CharField(max_length=40)
    body_sha256 = models.CharField(max_length=64)
    key_id = models.CharField(max_length=60)
    received_at = models.DateTimeField()
    result = models.JSONField(default=dict)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["sender", "message_id"], name="received_unique")]


class SeenNonce(models.Model):
    """One transmission of an envelope; the same nonce twice is a replay."""

    sender = models.CharField(max_length=30)
    nonce = models.CharField(max_length=64)
    message_id = models.CharField(max_length=120)
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sender", "nonce"], name="nonce_unique")]


class MessageRefusal(models.Model):
    """An envelope refused, and why (also in the platform's audit chain)."""

    sender = models.CharField(max_length=30, blank=True)
    message_id = models.CharField(max_length=120, blank=True)
    kind = models.CharField(max_length=40, blank=True)
    code = models.CharField(max_length=30)
    message = models.CharField(max_length=400)
    refused_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]


class CycleState(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed (cut off)"
    VALIDATED = "validated", "Validated by the issuers"
    NETTED = "netted", "Netted"
    SETTLED = "settled", "Settled"
    DISPUTED = "disputed", "Settled, with open disputes"


class ClearingCycle(models.Model):
    """One clearing cycle of an agreement: a business date (daily) or a month (monthly, first day)."""

    agreement = models.ForeignKey(RoamingAgreement, on_delete=models.PROTECT, related_name="cycles")
    business_date = models.DateField()
    opens_at = models.DateTimeField()
    cut_off_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=CycleState.choices, default=CycleState.OPEN)
    closed_at = models.DateTimeField(null=True, blank=True)
    validated_at = models.DateTimeField(null=True, blank=True)
    netted_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    validation_checks = models.JSONField(default=dict, blank=True, help_text="Checks each issuer ran.")
    # By the clock, unlike the ``*_at`` above (the business time each step was given, ``--now``): what the
    # resume sweep measures a cycle's age from (``services.cycles.cycles_resume_claim``).
    progressed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a step last moved the cycle on (wall clock)."
    )
    resumed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the resume sweep last sent the cycle's processing again."
    )
    resumes = models.PositiveIntegerField(default=0, help_text="How often the resume sweep sent it again.")

    class Meta:
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

    cycle = models.ForeignKey(ClearingCycle, on_delete=models.PROTECT, related_name="issuer_validations")
    issuer = models.CharField(max_length=30)
    checks = models.JSONField(help_text="The checks the issuer ran.")
    rejected = models.JSONField(help_text="Its rejections: record id, reason, message, acquirer, amount.")
    validated_at = models.DateTimeField()

    class Meta:
        ordering = ["cycle_id", "issuer"]
        constraints = [
            models.UniqueConstraint(fields=["cycle", "issuer"], name="issuer_validation_once"),
        ]

    def __str__(self) -> str:
        return f"{self.cycle_id}/{self.issuer}"


class RecordStatus(models.TextChoices):
    PENDING = "pending", "Awaiting issuer validation"
    VALID = "valid", "Valid"
    REJECTED = "rejected", "Rejected by the issuer (exception)"


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
    TAP = "tap", "Roaming tap"
    ADJUSTMENT = "adjustment", "Adjustment from a dispute"
    CLAIM = "claim", "Medical claim: the fund share the insured place owes the treatment place"


class ClearingRecord(models.Model):
    """One record to clear: what the issuer owes the acquirer for one roaming tap (清算记录), with its
    fees computed when it was accepted (basis points, half-up per record)."""

    # Unique by a constraint, not ``unique=True``: that would add a second, varchar_pattern_ops index that
    # nothing uses, maintained on every insert. The cycle is indexed by record_cycle_idx (its first column).
    record_id = models.CharField(max_length=60)
    cycle = models.ForeignKey(ClearingCycle, on_delete=models.PROTECT, related_name="records", db_index=False)
    kind = models.CharField(max_length=12, choices=RecordKind.choices, default=RecordKind.TAP)
    message_id = models.CharField(max_length=120, help_text="The envelope it came in.")
    acquirer = models.CharField(max_length=30)
    issuer = models.CharField(max_length=30)
    card_no = models.CharField(max_length=19)
    card_counter = models.BigIntegerField()
    amount_fen = models.BigIntegerField()
    issuer_fee_fen = models.BigIntegerField()
    network_fee_fen = models.BigIntegerField()
    accepted_at = models.DateTimeField(help_text="When the acquirer's terminal accepted the tap.")
    received_at = models.DateTimeField()
    # As written: ``rejected`` by validation, ``valid`` for records that need no issuer validation
    # (adjustments, adjudicated claims), else ``pending`` — read it through ``status_in``/``with_status``.
    status = models.CharField(max_length=10, choices=RecordStatus.choices, default=RecordStatus.PENDING)
    reason = models.CharField(max_length=40, blank=True)
    reason_message = models.CharField(max_length=300, blank=True)
    adjusts = models.CharField(max_length=60, blank=True, help_text="The record an adjustment reverses.")
    data = models.JSONField(default=dict, help_text="The record as the acquirer signed it.")

    objects = ClearingRecordQuerySet.as_manager()

    class Meta:
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


class BilateralPosition(models.Model):
    """Issuer × acquirer in a cycle (双边轧差矩阵): valid records only."""

    cycle = models.ForeignKey(ClearingCycle, on_delete=models.PROTECT, related_name="bilateral")
    issuer = models.CharField(max_length=30)
    acquirer = models.CharField(max_length=30)
    records = models.BigIntegerField()
    amount_fen = models.BigIntegerField()
    issuer_fee_fen = models.BigIntegerField()
    network_fee_fen = models.BigIntegerField()
    acquirer_due_fen = models.BigIntegerField(help_text="amount − issuer fee − network fee")

    class Meta:
        ordering = ["cycle_id", "issuer", "acquirer"]
        constraints = [
            models.UniqueConstraint(fields=["cycle", "issuer", "acquirer"], name="bilateral_unique"),
        ]


class NetPosition(models.Model):
    """A participant's multilateral net position in a cycle (多边净额); Σ net = 0 per cycle, checked by a
    deferred constraint trigger."""

    cycle = models.ForeignKey(ClearingCycle, on_delete=models.PROTECT, related_name="positions")
    participant = models.CharField(max_length=30)
    receivable_fen = models.BigIntegerField()
    payable_fen = models.BigIntegerField()
    net_fen = models.BigIntegerField()

    class Meta:
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

    cycle = models.ForeignKey(ClearingCycle, on_delete=models.PROTECT, related_name="instructions")
    payer = models.CharField(max_length=40)
    payee = models.CharField(max_length=40)
    amount_fen = models.BigIntegerField()
    value_date = models.DateField()

    class Meta:
        ordering = ["cycle_id", "id"]
        constraints = [models.CheckConstraint(name="instruction_positive", condition=Q(amount_fen__gt=0))]


class Journal(models.Model):
    """A ledger journal (记账凭证); its postings sum to zero (deferred constraint trigger)."""

    cycle = models.ForeignKey(ClearingCycle, on_delete=models.PROTECT, related_name="journals")
    kind = models.CharField(max_length=20)
    memo = models.CharField(max_length=200)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["cycle", "kind"], name="journal_once_per_cycle")]


class Posting(models.Model):
    journal = models.ForeignKey(Journal, on_delete=models.PROTECT, related_name="postings")
    account = models.CharField(max_length=60)
    amount_fen = models.BigIntegerField(help_text="Debit positive, credit negative.")

    class Meta:
        ordering = ["journal_id", "id"]


class ReconciliationFile(models.Model):
    """A participant's reconciliation file for a cycle (对账文件), and its confirmation."""

    cycle = models.ForeignKey(ClearingCycle, on_delete=models.PROTECT, related_name="reconciliations")
    participant = models.CharField(max_length=30)
    # The CSV's UTF-8, zlib-compressed (level 1) where it is written: ~6× smaller, and PostgreSQL stores it
    # as it is (STORAGE EXTERNAL, migration 0009) instead of compressing 10 MB per file in the step.
    csv_zlib = models.BinaryField()
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the CSV's UTF-8 (not of the compressed).")
    totals = models.JSONField()
    message_id = models.CharField(max_length=120)
    state = models.CharField(max_length=10, default="sent")  # sent, confirmed, mismatch
    answer = models.JSONField(default=dict, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["cycle_id", "participant"]
        constraints = [
            models.UniqueConstraint(fields=["cycle", "participant"], name="reconciliation_unique"),
        ]

    @property
    def csv(self) -> str:
        """The file's text (format in docs/clearing.md)."""
        return zlib.decompress(bytes(self.csv_zlib)).decode()


class DisputeState(models.TextChoices):
    OPEN = "open", "Open"
    ACCEPTED = "accepted", "Accepted (adjusted in a later cycle)"
    REJECTED = "rejected", "Rejected"


class Dispute(models.Model):
    record = models.ForeignKey(ClearingRecord, on_delete=models.PROTECT, related_name="disputes")
    raised_by = models.CharField(max_length=30)
    reason = models.CharField(max_length=300)
    raised_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=DisputeState.choices, default=DisputeState.OPEN)
    resolution = models.CharField(max_length=300, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    adjustment = models.ForeignKey(
        ClearingRecord, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["record"], condition=Q(state="open"), name="dispute_one_open_per_record"
            )
        ]


class NetworkHotlist(models.Model):
    """The network hotlist's head (网络黑名单): the union of the members' hotlists, versioned."""

    network = models.OneToOneField(RoamingNetwork, on_delete=models.PROTECT, related_name="hotlist")
    version = models.PositiveIntegerField(default=0)
    changed_at = models.DateTimeField(null=True, blank=True)


class NetworkHotlistEntry(models.Model):
    """A card on a network's hotlist from ``version_added`` until ``version_removed`` (if it was removed)."""

    network = models.ForeignKey(RoamingNetwork, on_delete=models.PROTECT, related_name="hotlist_entries")
    card_no = models.CharField(max_length=19)
    issuer = models.CharField(max_length=30)
    version_added = models.PositiveIntegerField()
    version_removed = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
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

    tenant = models.CharField(max_length=30, unique=True)
    version = models.PositiveIntegerField()
    applied_at = models.DateTimeField()


class HotlistDelivery(models.Model):
    """The network hotlist version last delivered to a tenant's inbox (the next delivery is a delta)."""

    network = models.ForeignKey(RoamingNetwork, on_delete=models.PROTECT, related_name="+")
    tenant = models.CharField(max_length=30)
    version = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["network", "tenant"], name="hotlist_delivery_unique")]


class EntitlementRecognition(models.Model):
    """An entitlement type the members of a roaming network recognise for each other's cardholders (权益互认),
    e.g. elderly free entry to parks across the Yangtze Delta: a visitor holding ``type_code`` at home is
    admitted where the local type of the same code is accepted, on the home tenant's signed answer."""

    network = models.ForeignKey(
        RoamingNetwork, on_delete=models.PROTECT, related_name="entitlement_recognitions"
    )
    type_code = models.SlugField(max_length=40)
    valid_from = models.DateField()
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["network__code", "type_code"]
        constraints = [
            models.UniqueConstraint(fields=["network", "type_code"], name="entitlement_recognition_once"),
        ]

    def __str__(self) -> str:
        return f"{self.network.code}: {self.type_code}"

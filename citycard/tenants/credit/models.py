"""Credit pay-later (信用付): the city's eligibility rules (授信规则), a credit line (信用额度) per cardholder,
the items deferred onto it (merchant payments and transit fares), the monthly bill (月度账单) and repayments
(还款).

Every deferred item and every repayment is a balanced posting on the tenant's ledger
(``citycard.tenants.accounts``): the line's receivable account (应收账款, negative while the cardholder owes)
against the merchant's payable or fare income, and the online account against the receivable on repayment.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from citycard.tenants.accounts.models import LedgerAccount, posting_field
from citycard.tenants.terminals.models import ReviewFlag


class CreditRules(models.Model):
    """The city's eligibility rules for a credit line (one row per tenant)."""

    enabled = models.BooleanField(default=True, verbose_name=_("enabled"))
    require_insured = models.BooleanField(
        default=True,
        help_text=_("Only cardholders with local social insurance (本地参保)."),
        verbose_name=_("require insured"),
    )
    active_months = models.PositiveSmallIntegerField(
        default=6,
        help_text=_("The card active for at least this many months."),
        verbose_name=_("active months"),
    )
    birth_decade_min = models.PositiveSmallIntegerField(
        default=1950,
        help_text=_("Earliest birth decade (age band), e.g. 1950."),
        verbose_name=_("birth decade from"),
    )
    birth_decade_max = models.PositiveSmallIntegerField(
        default=2000,
        help_text=_("Latest birth decade (age band), e.g. 2000."),
        verbose_name=_("birth decade to"),
    )
    schemes = ArrayField(
        models.CharField(max_length=10),
        default=list,
        blank=True,
        help_text=_("Card scheme codes that qualify; empty: every scheme."),
        verbose_name=_("schemes"),
    )
    limit_fen = models.BigIntegerField(default=50_000, verbose_name=_("limit (fen)"))
    due_day = models.PositiveSmallIntegerField(
        default=20, help_text=_("Day of the following month the bill is due."), verbose_name=_("due day")
    )
    grace_days = models.PositiveSmallIntegerField(
        default=3,
        help_text=_("Days after the due date before the card is restricted."),
        verbose_name=_("grace days"),
    )
    minimum_bps = models.PositiveIntegerField(
        default=1000,
        help_text=_("Minimum due in basis points of the bill."),
        verbose_name=_("minimum due (bps)"),
    )
    updated_at = models.DateTimeField(verbose_name=_("updated at"))
    updated_by = models.CharField(max_length=150, verbose_name=_("updated by"))

    class Meta:
        verbose_name = _("credit rules")
        verbose_name_plural = _("credit rules")
        constraints = [
            models.CheckConstraint(condition=Q(limit_fen__gte=0), name="creditrules_limit_not_negative"),
            models.CheckConstraint(condition=Q(due_day__gte=1, due_day__lte=28), name="creditrules_due_day"),
            models.CheckConstraint(condition=Q(minimum_bps__lte=10_000), name="creditrules_minimum_whole"),
        ]

    def __str__(self) -> str:
        return "credit rules"


class LineState(models.TextChoices):
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended (overdue)")
    CLOSED = "closed", _("Closed")


class CreditLine(models.Model):
    """A cardholder's credit line (信用额度); what is owed is minus its receivable account's balance."""

    cardholder_id = models.BigIntegerField(unique=True, verbose_name=_("cardholder id"))
    card_no = models.CharField(max_length=19, unique=True, verbose_name=_("card no"))
    limit_fen = models.BigIntegerField(verbose_name=_("limit (fen)"))
    state = models.CharField(
        max_length=10, choices=LineState.choices, default=LineState.ACTIVE, verbose_name=_("state")
    )
    state_reason = models.CharField(max_length=200, blank=True, verbose_name=_("state reason"))
    receivable = models.OneToOneField(
        LedgerAccount,
        on_delete=models.PROTECT,
        related_name="credit_line",
        help_text=_("The ledger account of what the cardholder owes (信用应收款)."),
        verbose_name=_("receivable account"),
    )
    granted_at = models.DateTimeField(verbose_name=_("granted at"))
    granted_by = models.CharField(max_length=150, verbose_name=_("granted by"))

    class Meta:
        verbose_name = _("credit line")
        verbose_name_plural = _("credit lines")
        ordering = ["card_no"]
        constraints = [
            models.CheckConstraint(condition=Q(limit_fen__gte=0), name="creditline_limit_not_negative")
        ]

    def __str__(self) -> str:
        return self.card_no


class ItemKind(models.TextChoices):
    MERCHANT = "merchant", _("Merchant payment on credit")
    FARE = "fare", _("Transit fare deferred")


class CreditItem(models.Model):
    """One payment deferred onto the line (a merchant payment or a fare), idempotent by its payment id."""

    line = models.ForeignKey(
        CreditLine, on_delete=models.PROTECT, related_name="items", verbose_name=_("line")
    )
    kind = models.CharField(max_length=10, choices=ItemKind.choices, verbose_name=_("kind"))
    payment_id = models.CharField(max_length=80, unique=True, verbose_name=_("payment id"))
    payee = models.CharField(max_length=100, verbose_name=_("payee"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    at = models.DateTimeField(verbose_name=_("at"))
    month = models.CharField(max_length=7, help_text=_("Beijing month, YYYY-MM."), verbose_name=_("month"))
    posting = posting_field(related_name="credit_item")
    bill = models.ForeignKey(
        "CreditBill",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="items",
        verbose_name=_("bill"),
    )

    class Meta:
        verbose_name = _("credit item")
        verbose_name_plural = _("credit items")
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["line", "month"], name="credititem_line_month")]
        constraints = [
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="credititem_amount_positive")
        ]


class BillState(models.TextChoices):
    OPEN = "open", _("Open (due)")
    PAID = "paid", _("Paid in full")
    OVERDUE = "overdue", _("Overdue")


class CreditBill(models.Model):
    """A line's monthly bill (月度账单) for a Beijing month: its items, the due date, the minimum and full due."""

    line = models.ForeignKey(
        CreditLine, on_delete=models.PROTECT, related_name="bills", verbose_name=_("line")
    )
    month = models.CharField(max_length=7, verbose_name=_("month"))
    items_fen = models.BigIntegerField(verbose_name=_("items (fen)"))
    full_due_fen = models.BigIntegerField(verbose_name=_("full due (fen)"))
    minimum_due_fen = models.BigIntegerField(verbose_name=_("minimum due (fen)"))
    paid_fen = models.BigIntegerField(default=0, verbose_name=_("paid (fen)"))
    due_on = models.DateField(verbose_name=_("due on"))
    state = models.CharField(
        max_length=10, choices=BillState.choices, default=BillState.OPEN, verbose_name=_("state")
    )
    generated_at = models.DateTimeField(verbose_name=_("generated at"))

    class Meta:
        verbose_name = _("credit bill")
        verbose_name_plural = _("credit bills")
        ordering = ["-month", "line_id"]
        constraints = [
            models.UniqueConstraint(fields=["line", "month"], name="creditbill_one_per_line_month")
        ]

    @property
    def outstanding_fen(self) -> int:
        return max(self.full_due_fen - self.paid_fen, 0)


class RepaymentSource(models.TextChoices):
    ACCOUNT = "account", _("Online account")
    CHANNEL = "channel", _("Bound channel (automatic)")


class CreditRepayment(models.Model):
    """A repayment (还款) onto the line, idempotent by its key."""

    line = models.ForeignKey(
        CreditLine, on_delete=models.PROTECT, related_name="repayments", verbose_name=_("line")
    )
    key = models.CharField(max_length=80, unique=True, verbose_name=_("key"))
    source = models.CharField(max_length=10, choices=RepaymentSource.choices, verbose_name=_("source"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    at = models.DateTimeField(verbose_name=_("at"))
    posting = posting_field(related_name="credit_repayment")
    order_no = models.CharField(
        max_length=64,
        blank=True,
        help_text=_("The channel collection order it came through."),
        verbose_name=_("order no"),
    )

    class Meta:
        verbose_name = _("credit repayment")
        verbose_name_plural = _("credit repayments")
        ordering = ["at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="creditrepayment_amount_positive")
        ]


class RoamingFare(models.Model):
    """A ride this city's cardholder paid by the citizen code in another city (异地扫码乘车), accepted by this
    city's validation of the acquirer's clearing record: owed by the cardholder here (their credit line or
    online account, ``online_fares_book``), owed to the acquiring city through the clearing cycle's
    settlement (``interop:<acquirer>``). Once per clearing record."""

    record_id = models.CharField(max_length=80, unique=True, verbose_name=_("clearing record id"))
    acquirer = models.CharField(max_length=30, verbose_name=_("acquirer"))
    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    tapped_at = models.DateTimeField(verbose_name=_("tapped at"))
    payee = models.CharField(max_length=100, blank=True, verbose_name=_("payee"))
    received_at = models.DateTimeField(verbose_name=_("received at"))
    booked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("booked at"))

    class Meta:
        verbose_name = _("roaming citizen-code fare")
        verbose_name_plural = _("roaming citizen-code fares")
        ordering = ["tapped_at", "id"]
        indexes = [models.Index(fields=["id"], name="roamingfare_unbooked", condition=Q(booked_at=None))]
        constraints = [
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="roamingfare_amount_positive")
        ]


class FaresCursor(models.Model):
    """How far ``online_fares_book`` has read the taps (one row per tenant): every citizen-code ride with
    a transaction id up to ``through_tx_id`` is booked or held, except ``pending_tx_ids`` (fares the online
    account could not pay yet, rides whose batch is not verified yet), asked again by the next run."""

    through_tx_id = models.BigIntegerField(default=0, verbose_name=_("read through transaction id"))
    pending_tx_ids = ArrayField(
        models.BigIntegerField(), default=list, blank=True, verbose_name=_("pending transaction ids")
    )
    updated_at = models.DateTimeField(verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("citizen-code fares cursor")
        verbose_name_plural = _("citizen-code fares cursors")


class RoamingPaymentSource(models.TextChoices):
    CREDIT = "credit", _("Credit line (onto the monthly bill)")
    ACCOUNT = "account", _("Online account")


class RoamingPayment(models.Model):
    """A payment this city's cardholder made by the citizen code at another city's merchant (异地商户扫码支付),
    booked when this city's validation of the acquirer's clearing record (merchant service) accepted it:
    the code checked with this city's keys and its nonce spent once. Owed by the cardholder here (their
    credit line, else their online account: ``roaming_code_payments_book``), owed to the acquiring city
    ``interop:<acquirer>`` through the merchant-payment cycle's settlement. Once per clearing record; a
    payment neither can pay is no row: the record is rejected (``no_funds``)."""

    record_id = models.CharField(max_length=80, unique=True, verbose_name=_("clearing record id"))
    acquirer = models.CharField(max_length=30, verbose_name=_("acquirer"))
    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    merchant = models.CharField(
        max_length=40,
        blank=True,
        help_text=_("The acquirer's merchant code (its terminal's route)."),
        verbose_name=_("merchant"),
    )
    payee = models.CharField(
        max_length=100, help_text=_("The merchant and its city."), verbose_name=_("payee")
    )
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    paid_at = models.DateTimeField(verbose_name=_("paid at"))
    source = models.CharField(
        max_length=10, choices=RoamingPaymentSource.choices, verbose_name=_("paid from")
    )
    posting = posting_field(related_name="roaming_payment")
    booked_at = models.DateTimeField(verbose_name=_("booked at"))

    class Meta:
        verbose_name = _("citizen-code payment in another city")
        verbose_name_plural = _("citizen-code payments in other cities")
        ordering = ["-paid_at", "-id"]
        indexes = [models.Index(fields=["card_no", "paid_at"], name="roamingpayment_card")]
        constraints = [
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="roamingpayment_amount_positive")
        ]

    def __str__(self) -> str:
        return self.record_id


class CodeReviewDecision(models.TextChoices):
    CHARGE = "charge", _("charge after review (复核后扣费)")
    WAIVE = "waive", _("waive (免收)")


class CodeReviewOutcome(models.TextChoices):
    DEFERRED = "deferred", _("deferred onto the credit line")
    CHARGED = "charged", _("charged to the online account")
    CLEARED = "cleared", _("left to the issuer through clearing")
    WAIVED = "waived", _("not charged")


class CodeRideFlag(ReviewFlag):
    """A citizen-code ride the verification stage flagged (``code_*``), as the clerk reviewing it sees it:
    the review flag itself (a proxy), with the decisions ``code_ride_charge`` / ``code_ride_waive``."""

    class Meta:
        proxy = True
        verbose_name = _("citizen-code ride under review")
        verbose_name_plural = _("citizen-code rides under review")


class CodeRideReview(models.Model):
    """A clerk's decision on a flagged citizen-code ride (电子市民码复核): charged after review (复核后扣费) —
    booked against the cardholder once, as ``online_fares_book`` would, or for another city's card left to
    its issuer through clearing — or waived (免收). One per ride."""

    flag = models.OneToOneField(
        ReviewFlag, on_delete=models.PROTECT, related_name="code_review", verbose_name=_("review flag")
    )
    transaction_id = models.BigIntegerField(unique=True, verbose_name=_("transaction id"))
    decision = models.CharField(max_length=10, choices=CodeReviewDecision.choices, verbose_name=_("decision"))
    outcome = models.CharField(max_length=10, choices=CodeReviewOutcome.choices, verbose_name=_("outcome"))
    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    fare_id = models.CharField(max_length=80, blank=True, verbose_name=_("fare id"))
    record_id = models.CharField(max_length=80, blank=True, verbose_name=_("clearing record id"))
    decided_by = models.CharField(max_length=150, verbose_name=_("decided by"))
    decided_at = models.DateTimeField(verbose_name=_("decided at"))
    note = models.CharField(max_length=300, blank=True, verbose_name=_("note"))

    class Meta:
        verbose_name = _("citizen-code ride review")
        verbose_name_plural = _("citizen-code ride reviews")
        ordering = ["-decided_at", "id"]

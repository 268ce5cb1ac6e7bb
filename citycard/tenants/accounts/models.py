"""The online account (市民卡账户) on a double-entry ledger, the e-purse shadow balance, subsidies.

Every posting's legs sum to zero: a deferred constraint trigger checks it at commit, so no code path can
leave a half posting. A balance never goes below ``-overdraft_fen`` (a check constraint) unless the account
is an external one (bank clearing, merchants, subsidy funds) allowed to run negative.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class AccountKind(models.TextChoices):
    HOLDER = "holder", "Cardholder online account (市民卡账户)"
    TOPUP_CLEARING = "topup", "Top-up clearing (bank / cash)"
    MERCHANT = "merchant", "Merchant payable"
    SUBSIDY_FUND = "subsidy", "Subsidy fund (财政补贴资金)"


class LedgerAccount(models.Model):
    code = models.CharField(max_length=60, unique=True)
    kind = models.CharField(max_length=10, choices=AccountKind.choices)
    cardholder_id = models.BigIntegerField(null=True, blank=True, unique=True)
    card_no = models.CharField(max_length=19, blank=True, help_text="The card the account is reached by.")
    balance_fen = models.BigIntegerField(default=0)
    overdraft_fen = models.BigIntegerField(default=0, help_text="How far below zero it may go.")
    allow_negative = models.BooleanField(default=False, help_text="External accounts carry the other side.")
    opened_at = models.DateTimeField()

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(allow_negative=True) | Q(balance_fen__gte=-models.F("overdraft_fen")),
                name="ledgeraccount_not_below_overdraft",
            ),
            models.CheckConstraint(
                condition=Q(overdraft_fen__gte=0), name="ledgeraccount_overdraft_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class PostingKind(models.TextChoices):
    TOPUP = "topup", "Top-up (充值)"
    PAYMENT = "payment", "Payment (消费)"
    REFUND = "refund", "Refund (退款)"
    SUBSIDY = "subsidy", "Subsidy credit (补贴发放)"


class Posting(models.Model):
    """One balanced movement of money (记账凭证); retried with the same idempotency key it is not repeated."""

    kind = models.CharField(max_length=10, choices=PostingKind.choices)
    idempotency_key = models.CharField(max_length=120, unique=True)
    at = models.DateTimeField()
    amount_fen = models.BigIntegerField()
    memo = models.CharField(max_length=200, blank=True)
    reverses = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="refunds"
    )
    actor = models.CharField(max_length=150)

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(amount_fen__gt=0), name="posting_amount_positive")]


class Leg(models.Model):
    """One side of a posting: a signed amount on one account (credit positive)."""

    posting = models.ForeignKey(Posting, on_delete=models.PROTECT, related_name="legs")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="legs")
    amount_fen = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(amount_fen=0), name="leg_amount_not_zero")]


class PurseShadow(models.Model):
    """The back office's mirror of a chip e-purse (电子钱包影子账户), followed from uploaded taps."""

    card_no = models.CharField(max_length=19, unique=True)
    balance_fen = models.BigIntegerField(default=0)
    last_counter = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()
    closed = models.BooleanField(default=False, help_text="Moved to a replacement card.")


class SubsidyProgramme(models.Model):
    """A subsidy programme (惠民惠农补贴项目): who gets it (a rider category, or every cardholder) and its
    items, each a named amount (e.g. 耕地地力保护补贴 120.00)."""

    code = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    department = models.CharField(max_length=40, blank=True, help_text="Paying department code.")
    category = models.CharField(max_length=20, blank=True, help_text="Rider category required; empty: all.")
    items = models.JSONField(help_text='[{"item": "...", "amount_fen": 12000}, ...]')
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class SubsidyRun(models.Model):
    programme = models.ForeignKey(SubsidyProgramme, on_delete=models.PROTECT, related_name="runs")
    period = models.CharField(max_length=20, help_text="e.g. 2026-11 or 2026")
    on = models.DateField(help_text="Eligibility is decided on this day.")
    at = models.DateTimeField()
    payments = models.IntegerField(default=0)
    total_fen = models.BigIntegerField(default=0)
    actor = models.CharField(max_length=150)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["programme", "period"], name="subsidyrun_once_per_period")
        ]


class SubsidyPayment(models.Model):
    run = models.ForeignKey(SubsidyRun, on_delete=models.PROTECT, related_name="payment_rows")
    cardholder_id = models.BigIntegerField(db_index=True)
    amount_fen = models.BigIntegerField()
    posting = models.OneToOneField(Posting, on_delete=models.PROTECT)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "cardholder_id"], name="subsidypayment_once")]


class SubsidyItem(models.Model):
    """Item-level detail of a payment (补贴明细) that the cardholder can query."""

    payment = models.ForeignKey(SubsidyPayment, on_delete=models.PROTECT, related_name="items")
    item = models.CharField(max_length=100)
    amount_fen = models.BigIntegerField()

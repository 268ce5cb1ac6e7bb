"""The online account (市民卡账户) on a double-entry ledger, the e-purse shadow balance, subsidies.

Every posting's legs sum to zero: a deferred constraint trigger checks it at commit, so no code path can
leave a half posting. A balance never goes below ``-overdraft_fen`` (a check constraint) unless the account
is an external one (bank clearing, merchants, subsidy funds) allowed to run negative.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class AccountKind(models.TextChoices):
    HOLDER = "holder", _("Cardholder online account")
    TOPUP_CLEARING = "topup", _("Top-up clearing (bank / cash)")
    MERCHANT = "merchant", _("Merchant payable")
    SUBSIDY_FUND = "subsidy", _("Subsidy fund")
    PURSE_FLOAT = "purse", _("E-purse float")
    FEE_INCOME = "fee", _("Fee income")
    SETTLEMENT = "settlement", _("Merchant settlement clearing (bank)")
    INTEROP = "interop", _("Interop receivable from an issuer")
    CREDIT = "credit", _("Credit receivable (what a cardholder owes on credit)")
    FARE_INCOME = "fare", _("Fare income (fares deferred on credit)")
    FEE_EXPENSE = "fee_exp", _("Channel fee expense")
    BANK = "bank", _("City bank account (collections paid out by the providers)")
    SUSPENSE = "suspense", _("Suspense (挂账): money received not yet matched")


class LedgerAccount(models.Model):
    code = models.CharField(max_length=60, unique=True, verbose_name=_("code"))
    kind = models.CharField(max_length=10, choices=AccountKind.choices, verbose_name=_("kind"))
    cardholder_id = models.BigIntegerField(
        null=True, blank=True, unique=True, verbose_name=_("cardholder id")
    )
    card_no = models.CharField(
        max_length=19,
        blank=True,
        help_text=_("The card the account is reached by."),
        verbose_name=_("card no"),
    )
    balance_fen = models.BigIntegerField(default=0, verbose_name=_("balance (fen)"))
    overdraft_fen = models.BigIntegerField(
        default=0, help_text=_("How far below zero it may go."), verbose_name=_("overdraft (fen)")
    )
    allow_negative = models.BooleanField(
        default=False,
        help_text=_("External accounts carry the other side."),
        verbose_name=_("allow negative"),
    )
    opened_at = models.DateTimeField(verbose_name=_("opened at"))

    class Meta:
        verbose_name = _("ledger account")
        verbose_name_plural = _("ledger accounts")
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
    TOPUP = "topup", _("Top-up")
    PAYMENT = "payment", _("Payment")
    REFUND = "refund", _("Refund")
    SUBSIDY = "subsidy", _("Subsidy credit")
    PURSE_LOAD = "purse_load", _("E-purse load from the account")
    PURSE_PAY = "purse_pay", _("E-purse purchase at a merchant")
    SETTLEMENT = "settlement", _("Merchant settlement")
    CREDIT_FARE = "credit_far", _("Fare deferred on credit")
    CREDIT_REPAY = "credit_rep", _("Credit repayment")
    CHANNEL_FEE = "chan_fee", _("Payment channel fees")
    PAYOUT = "payout", _("Provider payout to the bank")
    SUSPENSE = "suspense", _("Suspense (挂账)")


class Posting(models.Model):
    """One balanced movement of money (记账凭证); retried with the same idempotency key it is not repeated."""

    kind = models.CharField(max_length=10, choices=PostingKind.choices, verbose_name=_("kind"))
    idempotency_key = models.CharField(max_length=120, unique=True, verbose_name=_("idempotency key"))
    at = models.DateTimeField(verbose_name=_("at"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    memo = models.CharField(max_length=200, blank=True, verbose_name=_("memo"))
    reverses = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="refunds",
        verbose_name=_("reverses"),
    )
    actor = models.CharField(max_length=150, verbose_name=_("actor"))

    class Meta:
        verbose_name = _("posting")
        verbose_name_plural = _("postings")
        ordering = ["-at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(amount_fen__gt=0), name="posting_amount_positive")]


def posting_field(
    *,
    related_name: str | None,
    one: bool = True,
    optional: bool = False,
    verbose_name: Any = None,
    help_text: Any = "",
) -> models.ForeignKey:
    """The posting a row of another app's books stands for (a top-up order's credit, a refund, a
    settlement): a one-to-one link (``one``) or a plain foreign key, protected (a posting is never deleted
    under a row), empty until posted when ``optional``. One definition for the many such fields of the
    payments, credit and merchants models (their migrations read the same field)."""
    kwargs: dict[str, Any] = {"on_delete": models.PROTECT, "verbose_name": verbose_name or _("posting")}
    if optional:
        kwargs.update(null=True, blank=True)
    if related_name is not None:
        kwargs["related_name"] = related_name
    if help_text:
        kwargs["help_text"] = help_text
    return (models.OneToOneField if one else models.ForeignKey)(Posting, **kwargs)


class Leg(models.Model):
    """One side of a posting: a signed amount on one account (credit positive)."""

    posting = models.ForeignKey(
        Posting, on_delete=models.PROTECT, related_name="legs", verbose_name=_("posting")
    )
    account = models.ForeignKey(
        LedgerAccount, on_delete=models.PROTECT, related_name="legs", verbose_name=_("account")
    )
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))

    class Meta:
        verbose_name = _("leg")
        verbose_name_plural = _("legs")
        constraints = [models.CheckConstraint(condition=~Q(amount_fen=0), name="leg_amount_not_zero")]


class PurseShadow(models.Model):
    """The back office's mirror of a chip e-purse (电子钱包影子账户), followed from uploaded taps."""

    card_no = models.CharField(max_length=19, unique=True, verbose_name=_("card no"))
    balance_fen = models.BigIntegerField(default=0, verbose_name=_("balance (fen)"))
    last_counter = models.BigIntegerField(default=0, verbose_name=_("last counter"))
    updated_at = models.DateTimeField(verbose_name=_("updated at"))
    closed = models.BooleanField(
        default=False, help_text=_("Moved to a replacement card."), verbose_name=_("closed")
    )

    class Meta:
        verbose_name = _("purse shadow")
        verbose_name_plural = _("purse shadows")


class SubsidyProgramme(models.Model):
    """A subsidy programme (惠民惠农补贴项目): who gets it (a rider category, or every cardholder) and its
    items, each a named amount (e.g. 耕地地力保护补贴 120.00)."""

    code = models.CharField(max_length=40, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, verbose_name=_("name"))
    department = models.CharField(
        max_length=40, blank=True, help_text=_("Paying department code."), verbose_name=_("department")
    )
    category = models.CharField(
        max_length=20,
        blank=True,
        help_text=_("Rider category required; empty: all."),
        verbose_name=_("category"),
    )
    items = models.JSONField(
        help_text=_('[{"item": "...", "amount_fen": 12000}, ...]'), verbose_name=_("items")
    )
    active = models.BooleanField(default=True, verbose_name=_("active"))

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    class Meta:
        verbose_name = _("subsidy programme")
        verbose_name_plural = _("subsidy programmes")


class SubsidyRun(models.Model):
    programme = models.ForeignKey(
        SubsidyProgramme, on_delete=models.PROTECT, related_name="runs", verbose_name=_("programme")
    )
    period = models.CharField(max_length=20, help_text=_("e.g. 2026-11 or 2026"), verbose_name=_("period"))
    on = models.DateField(help_text=_("Eligibility is decided on this day."), verbose_name=_("on"))
    at = models.DateTimeField(verbose_name=_("at"))
    payments = models.IntegerField(default=0, verbose_name=_("payments"))
    total_fen = models.BigIntegerField(default=0, verbose_name=_("total (fen)"))
    actor = models.CharField(max_length=150, verbose_name=_("actor"))

    class Meta:
        verbose_name = _("subsidy run")
        verbose_name_plural = _("subsidy runs")
        constraints = [
            models.UniqueConstraint(fields=["programme", "period"], name="subsidyrun_once_per_period")
        ]


class SubsidyPayment(models.Model):
    run = models.ForeignKey(
        SubsidyRun, on_delete=models.PROTECT, related_name="payment_rows", verbose_name=_("run")
    )
    cardholder_id = models.BigIntegerField(db_index=True, verbose_name=_("cardholder id"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    posting = models.OneToOneField(Posting, on_delete=models.PROTECT, verbose_name=_("posting"))

    class Meta:
        verbose_name = _("subsidy payment")
        verbose_name_plural = _("subsidy payments")
        constraints = [models.UniqueConstraint(fields=["run", "cardholder_id"], name="subsidypayment_once")]


class SubsidyItem(models.Model):
    """Item-level detail of a payment (补贴明细) that the cardholder can query."""

    payment = models.ForeignKey(
        SubsidyPayment, on_delete=models.PROTECT, related_name="items", verbose_name=_("payment")
    )
    item = models.CharField(max_length=100, verbose_name=_("item"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))

    class Meta:
        verbose_name = _("subsidy item")
        verbose_name_plural = _("subsidy items")

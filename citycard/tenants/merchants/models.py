"""Merchants (特约商户) as parties: their contract (licence, category, settlement account, fee rate, accepted
means), their terminals, the payments and refunds they take, and their daily settlements (日结算).

Every payment, refund and settlement is a balanced posting on the tenant's ledger
(``citycard.tenants.accounts``); these rows say what the posting was for and which settlement carried it.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from citycard.tenants.accounts.models import LedgerAccount, posting_field
from citycard.tenants.terminals.models import Terminal


class MerchantState(models.TextChoices):
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended (takes no payments)")
    CLOSED = "closed", _("Closed")


class Means(models.TextChoices):
    """How a cardholder pays a merchant (受理方式)."""

    PURSE = "purse", _("E-purse (offline, at the merchant's terminal)")
    ACCOUNT = "account", _("Online account")
    CODE = "code", _("Citizen code (from the online account)")
    CREDIT = "credit", _("Credit pay-later (onto the monthly bill)")


class Category(models.TextChoices):
    """Merchant category (商户类别), by the card schemes' MCC."""

    CANTEEN = "5814", _("Canteen / fast food")
    PARKING = "7523", _("Parking")
    GROCERY = "5411", _("Shop / supermarket")
    RETAIL = "5999", _("Other retail")
    UTILITY = "4900", _("Utilities")
    HOSPITAL = "8062", _("Hospital cashier")


class Merchant(models.Model):
    code = models.SlugField(max_length=40, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, verbose_name=_("name"))
    licence_no = models.CharField(
        max_length=18,
        unique=True,
        help_text=_("Unified social credit code (统一社会信用代码), 18 characters with its check character."),
        verbose_name=_("licence number"),
    )
    category = models.CharField(max_length=4, choices=Category.choices, verbose_name=_("category"))
    department = models.CharField(
        max_length=40,
        blank=True,
        help_text=_("The department that onboarded it; empty: the city administration."),
        verbose_name=_("department"),
    )
    settlement_bank = models.CharField(max_length=60, verbose_name=_("settlement bank"))
    # The settlement bank account number, AES-256-GCM under the tenant's data key (cards.pii.Sealer);
    # its last four digits kept apart so it can be shown masked without decrypting it.
    settlement_account_enc = models.BinaryField(verbose_name=_("settlement account (encrypted)"))
    settlement_account_key_id = models.CharField(max_length=60, verbose_name=_("data key id"))
    settlement_account_last4 = models.CharField(max_length=4, verbose_name=_("settlement account last 4"))
    fee_bps = models.PositiveIntegerField(
        help_text=_("Fee rate in basis points (万分之一) of each day's net takings."),
        verbose_name=_("fee (bps)"),
    )
    accepted_means = ArrayField(
        models.CharField(max_length=10, choices=Means.choices), verbose_name=_("accepted means")
    )
    state = models.CharField(
        max_length=10, choices=MerchantState.choices, default=MerchantState.ACTIVE, verbose_name=_("state")
    )
    state_reason = models.CharField(max_length=200, blank=True, verbose_name=_("state reason"))
    payable = models.OneToOneField(
        LedgerAccount,
        on_delete=models.PROTECT,
        related_name="merchant",
        help_text=_("The ledger account of what is owed to the merchant (商户待结算款)."),
        verbose_name=_("payable account"),
    )
    onboarded_at = models.DateTimeField(verbose_name=_("onboarded at"))
    onboarded_by = models.CharField(max_length=150, verbose_name=_("onboarded by"))

    class Meta:
        verbose_name = _("merchant")
        verbose_name_plural = _("merchants")
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(fee_bps__lte=10_000), name="merchant_fee_at_most_whole")
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    @property
    def settlement_account_masked(self) -> str:
        """``**** **** **** 1234``: the last four digits only."""
        return f"**** **** **** {self.settlement_account_last4}"


class MerchantTerminal(models.Model):
    """A terminal (POS) registered to a merchant: its e-purse purchases are the merchant's payments."""

    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="terminals", verbose_name=_("merchant")
    )
    terminal = models.OneToOneField(
        Terminal, on_delete=models.PROTECT, related_name="merchant_link", verbose_name=_("terminal")
    )
    registered_at = models.DateTimeField(verbose_name=_("registered at"))

    class Meta:
        verbose_name = _("merchant terminal")
        verbose_name_plural = _("merchant terminals")

    def __str__(self) -> str:
        return f"{self.terminal_id} of {self.merchant_id}"


class Settlement(models.Model):
    """One merchant's settlement for one Beijing day (日结算), like a clearing cycle: open while the day's
    payments and refunds join it (an item of a day already settled joins the open settlement of the day it
    is booked), then settled once the day is over — its items summed, net of the fee, paid to the settlement
    account. One per (merchant, day)."""

    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="settlements", verbose_name=_("merchant")
    )
    day = models.DateField(verbose_name=_("day"))
    payments = models.IntegerField(default=0, verbose_name=pgettext_lazy("merchant settlement", "payments"))
    refunds = models.IntegerField(default=0, verbose_name=_("refunds"))
    gross_fen = models.BigIntegerField(default=0, verbose_name=_("gross (fen)"))
    refunds_fen = models.BigIntegerField(default=0, verbose_name=_("refunds (fen)"))
    fee_bps = models.PositiveIntegerField(default=0, verbose_name=_("fee (bps)"))
    fee_fen = models.BigIntegerField(default=0, verbose_name=_("fee (fen)"))
    net_fen = models.BigIntegerField(default=0, verbose_name=_("net paid (fen)"))
    posting = posting_field(related_name=None, optional=True)
    settled_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Empty: open, items still join it."), verbose_name=_("settled at")
    )
    actor = models.CharField(max_length=150, blank=True, verbose_name=_("actor"))

    class Meta:
        verbose_name = _("settlement")
        verbose_name_plural = _("settlements")
        ordering = ["-day", "merchant_id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "day"], name="settlement_once_per_merchant_day")
        ]

    def __str__(self) -> str:
        return f"{self.merchant_id} {self.day}"


class ChargebackFrom(models.TextChoices):
    """Where a rejected roaming payment is taken back from (拒付扣回)."""

    PAYABLE = "payable", _("The merchant's payable (its settlement still open)")
    RECEIVABLE = "receivable", _("A receivable from the merchant (already settled)")


class Payment(models.Model):
    """A payment a merchant took (商户收款), by any means; its posting moved the money."""

    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="payments", verbose_name=_("merchant")
    )
    means = models.CharField(max_length=10, choices=Means.choices, verbose_name=_("means"))
    payment_id = models.CharField(
        max_length=80,
        unique=True,
        help_text=_("The payer's order id (a retry pays once); tap:<transaction id> for e-purse taps."),
        verbose_name=_("payment id"),
    )
    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    issuer_tenant = models.CharField(
        max_length=30,
        blank=True,
        help_text=_("A roaming card's issuer; empty: own card."),
        verbose_name=_("issuer"),
    )
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    refunded_fen = models.BigIntegerField(default=0, verbose_name=_("refunded (fen)"))
    at = models.DateTimeField(verbose_name=_("at"))
    day = models.DateField(help_text=_("Beijing day."), verbose_name=_("day"))
    transaction_id = models.BigIntegerField(
        null=True, blank=True, unique=True, help_text=_("The e-purse tap."), verbose_name=_("transaction id")
    )
    posting = posting_field(related_name="+")
    settlement = models.ForeignKey(
        Settlement, on_delete=models.PROTECT, related_name="payment_rows", verbose_name=_("settlement")
    )
    # A roaming card's payment the issuer rejected in clearing (拒付): reversed from the receivable from the
    # issuer once the cycle's reconciliation file says so (``merchant_roaming_rejections_book``).
    rejected_at = models.DateTimeField(null=True, blank=True, verbose_name=_("rejected at"))
    rejection_reason = models.CharField(
        max_length=40,
        blank=True,
        help_text=_("The issuer's rejection reason (清分校验拒付原因)."),
        verbose_name=_("rejection reason"),
    )
    charged_back_from = models.CharField(
        max_length=10,
        choices=ChargebackFrom.choices,
        blank=True,
        verbose_name=_("charged back from"),
    )
    rejection_posting = posting_field(related_name="+", optional=True, verbose_name=_("rejection posting"))

    class Meta:
        verbose_name = pgettext_lazy("merchant", "payment")
        verbose_name_plural = pgettext_lazy("merchant", "payments")
        ordering = ["-at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_fen__gte=0, refunded_fen__lte=models.F("amount_fen")),
                name="payment_refunds_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return self.payment_id


class Refund(models.Model):
    """A full or partial refund of a payment (退款), to the payer's online account; once per refund id."""

    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("payment")
    )
    refund_id = models.CharField(max_length=80, unique=True, verbose_name=_("refund id"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    at = models.DateTimeField(verbose_name=_("at"))
    day = models.DateField(help_text=_("Beijing day."), verbose_name=_("day"))
    posting = posting_field(related_name="+")
    settlement = models.ForeignKey(
        Settlement, on_delete=models.PROTECT, related_name="refund_rows", verbose_name=_("settlement")
    )
    actor = models.CharField(max_length=150, verbose_name=_("actor"))

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["-at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(amount_fen__gt=0), name="refund_amount_positive")]

    def __str__(self) -> str:
        return self.refund_id

"""Payment channels (支付渠道) and what goes through them: top-up orders, refunds, the notifications
received, the providers' daily statements and the differences a clerk resolves (对账差错).

Money itself is only in the ledger (citycard.tenants.accounts): each channel has its clearing account
(渠道备付金/清算户, ``topup:<channel code>``), and an order or refund points at the posting it made.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from citycard.tenants.accounts.models import posting_field
from citycard.tenants.payments.reasons import reason_text


class Provider(models.TextChoices):
    BANK = "bank", _("Card bank (social-security card financial account)")
    UNIONPAY = "unionpay", _("UnionPay")
    WECHAT = "wechat", _("WeChat Pay")
    ALIPAY = "alipay", _("Alipay")


class PaymentChannel(models.Model):
    """One provider contract of the city: its ids, gateway, notify URL and keys. The merchant private key
    and the symmetric key are sealed with the tenant's data key; the provider's public key is public."""

    code = models.SlugField(max_length=30, unique=True, verbose_name=_("code"))
    provider = models.CharField(max_length=10, choices=Provider.choices, verbose_name=_("provider"))
    name = models.CharField(max_length=100, verbose_name=_("name"))
    merchant_id = models.CharField(
        max_length=40,
        help_text=_("mchid / PID / merId / the bank's merchant number"),
        verbose_name=_("merchant id"),
    )
    app_id = models.CharField(max_length=40, blank=True, verbose_name=_("app id"))
    gateway_url = models.URLField(max_length=300, verbose_name=_("gateway URL"))
    notify_url = models.URLField(max_length=300, verbose_name=_("notify URL"))
    provider_public_key_pem = models.TextField(verbose_name=_("provider public key (PEM)"))
    provider_serial = models.CharField(
        max_length=64, blank=True, verbose_name=_("provider certificate serial")
    )
    serial_no = models.CharField(max_length=64, blank=True, verbose_name=_("merchant certificate serial"))
    secrets_sealed = models.BinaryField(editable=False, verbose_name=_("sealed keys"))
    secrets_key_id = models.CharField(max_length=40, editable=False, verbose_name=_("data key id"))
    query_after_seconds = models.PositiveIntegerField(
        default=300,
        help_text=_("An order not notified after this long is asked for (查单)."),
        verbose_name=_("query after (seconds)"),
    )
    close_after_seconds = models.PositiveIntegerField(
        default=7200,
        help_text=_("An order still unpaid at the provider after this long is closed (关单)."),
        verbose_name=_("close after (seconds)"),
    )
    active = models.BooleanField(default=True, verbose_name=_("active"))
    configured_at = models.DateTimeField(verbose_name=_("configured at"))

    class Meta:
        verbose_name = _("payment channel")
        verbose_name_plural = _("payment channels")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} ({self.get_provider_display()})"

    @property
    def clearing_account_code(self) -> str:
        return f"topup:channel-{self.code}"


class OrderState(models.TextChoices):
    CREATED = "created", _("Awaiting payment")
    PAID = "paid", _("Paid and credited")
    MISMATCH = "mismatch", _("Paid a different amount: not credited")
    CLOSED = "closed", _("Closed unpaid")


class OrderPurpose(models.TextChoices):
    TOPUP = "topup", _("Top-up of the online account")
    COLLECTION = "collection", _("Collection through a bound channel")


class TopupOrder(models.Model):
    """A top-up through a channel (渠道充值订单). ``out_trade_no`` is the city's order number the provider
    knows; ``request_key`` the caller's idempotency key: the same key always finds the same order."""

    channel = models.ForeignKey(
        PaymentChannel, on_delete=models.PROTECT, related_name="orders", verbose_name=_("channel")
    )
    out_trade_no = models.CharField(max_length=32, unique=True, verbose_name=_("order no"))
    request_key = models.CharField(max_length=120, unique=True, verbose_name=_("request key"))
    purpose = models.CharField(
        max_length=12, choices=OrderPurpose.choices, default=OrderPurpose.TOPUP, verbose_name=_("purpose")
    )
    card_no = models.CharField(max_length=19, db_index=True, verbose_name=_("card no"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    state = models.CharField(
        max_length=10, choices=OrderState.choices, default=OrderState.CREATED, verbose_name=_("state")
    )
    provider_trade_no = models.CharField(max_length=64, blank=True, verbose_name=_("provider trade no"))
    paid_fen = models.BigIntegerField(
        null=True, blank=True, help_text=_("What the provider says was paid."), verbose_name=_("paid (fen)")
    )
    payment_params = models.JSONField(default=dict, verbose_name=_("payment parameters"))
    created_at = models.DateTimeField(verbose_name=_("created at"))
    paid_at = models.DateTimeField(null=True, blank=True, db_index=True, verbose_name=_("paid at"))
    credited_at = models.DateTimeField(null=True, blank=True, db_index=True, verbose_name=_("credited at"))
    settled_by = models.CharField(
        max_length=12,
        blank=True,
        help_text=_("notification, query or reconciliation"),
        verbose_name=_("settled by"),
    )
    posting = posting_field(related_name="channel_order", optional=True)
    actor = models.CharField(max_length=150, verbose_name=_("actor"))

    class Meta:
        verbose_name = _("top-up order")
        verbose_name_plural = _("top-up orders")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="topuporder_amount_positive")
        ]

    def __str__(self) -> str:
        return self.out_trade_no


class RefundState(models.TextChoices):
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Refused by the provider")


class ChannelRefund(models.Model):
    """A refund of a top-up back through its channel (渠道退款)."""

    order = models.ForeignKey(
        TopupOrder, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("order")
    )
    out_refund_no = models.CharField(max_length=64, unique=True, verbose_name=_("refund no"))
    request_key = models.CharField(max_length=120, unique=True, verbose_name=_("request key"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    state = models.CharField(max_length=10, choices=RefundState.choices, verbose_name=_("state"))
    provider_refund_no = models.CharField(max_length=64, blank=True, verbose_name=_("provider refund no"))
    reason = models.CharField(max_length=200, blank=True, verbose_name=_("reason"))
    at = models.DateTimeField(db_index=True, verbose_name=_("at"))
    posting = posting_field(related_name="channel_refund", optional=True)
    actor = models.CharField(max_length=150, verbose_name=_("actor"))

    class Meta:
        verbose_name = _("channel refund")
        verbose_name_plural = _("channel refunds")
        ordering = ["-at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="channelrefund_amount_positive")
        ]


class NoticeOutcome(models.TextChoices):
    CREDITED = "credited", _("Credited")
    REPLAY = "replay", _("Already credited (replay)")
    MISMATCH = "mismatch", _("Amount differs from the order: not credited")
    UNKNOWN = "unknown", _("No such order")
    REJECTED = "rejected", _("Signature or content refused")
    UNPAID = "unpaid", _("Not a success")


class ChannelNotice(models.Model):
    """Every notification received (回调记录), trusted or not, with what became of it."""

    channel = models.ForeignKey(
        PaymentChannel, on_delete=models.PROTECT, related_name="notices", verbose_name=_("channel")
    )
    received_at = models.DateTimeField(db_index=True, verbose_name=_("received at"))
    notify_id = models.CharField(max_length=80, blank=True, verbose_name=_("notification id"))
    out_trade_no = models.CharField(max_length=32, blank=True, db_index=True, verbose_name=_("order no"))
    amount_fen = models.BigIntegerField(null=True, blank=True, verbose_name=_("amount (fen)"))
    outcome = models.CharField(max_length=10, choices=NoticeOutcome.choices, verbose_name=_("outcome"))
    detail = models.CharField(max_length=200, blank=True, verbose_name=_("detail"))

    class Meta:
        verbose_name = _("channel notification")
        verbose_name_plural = _("channel notifications")
        ordering = ["-received_at", "-id"]


class StatementRun(models.Model):
    """One provider statement (对账单) reconciled against the ledger: the file's hash and totals. Its lines are
    read into a scratch table for the join and not kept (the provider's file is the record); what differs is
    kept as differences. The same file again finds this run."""

    channel = models.ForeignKey(
        PaymentChannel, on_delete=models.PROTECT, related_name="statement_runs", verbose_name=_("channel")
    )
    statement_date = models.DateField(verbose_name=_("statement date"))
    file_name = models.CharField(max_length=200, blank=True, verbose_name=_("file name"))
    file_sha256 = models.CharField(max_length=64, verbose_name=_("file SHA-256"))
    lines = models.IntegerField(default=0, verbose_name=_("lines"))
    paid_fen = models.BigIntegerField(default=0, verbose_name=_("paid (fen)"))
    refunded_fen = models.BigIntegerField(default=0, verbose_name=_("refunded (fen)"))
    fee_fen = models.BigIntegerField(default=0, verbose_name=_("fees (fen)"))
    fees_posted_fen = models.BigIntegerField(
        default=0,
        help_text=_(
            "The fees this run posted to the fee expense account (what earlier files of the day did not)."
        ),
        verbose_name=_("fees posted (fen)"),
    )
    fee_posting = posting_field(related_name="+", one=False, optional=True, verbose_name=_("fee posting"))
    suspense_posting = posting_field(
        related_name="+", one=False, optional=True, verbose_name=_("suspense posting")
    )
    matched = models.IntegerField(default=0, verbose_name=_("matched"))
    exceptions = models.IntegerField(default=0, verbose_name=_("differences"))
    at = models.DateTimeField(verbose_name=_("at"))
    actor = models.CharField(max_length=150, verbose_name=_("actor"))

    class Meta:
        verbose_name = _("statement run")
        verbose_name_plural = _("statement runs")
        ordering = ["-statement_date", "-at"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "statement_date", "file_sha256"], name="statementrun_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel.code} {self.statement_date}"


class DifferenceKind(models.TextChoices):
    LONG = "long", _("长款: in the statement, not in the ledger")
    SHORT = "short", _("短款: in the ledger, not in the statement")
    MISSING_NOTICE = "missing", _("Paid, but no notification credited it")
    AMOUNT = "amount", _("Amount differs")
    PAYOUT = "payout", _("Payout differs from the statement's net")


class DifferenceAction(models.TextChoices):
    CREDIT = "credit", _("Credit the cardholder (the money arrived)")
    REVERSE = "reverse", _("Reverse the credit (the money never arrived)")
    ADJUST = "adjust", _("Post the difference")
    ACCEPT = "accept", _("Accept without posting (timing, provider-side)")
    MATCH = "match", _("Matched from suspense to an order or cardholder")
    REFUND = "refund", _("Refunded from suspense through the channel")


class ReconException(models.Model):
    """A difference between a statement and the ledger (对账差错), open until a clerk resolves it."""

    run = models.ForeignKey(
        StatementRun, on_delete=models.PROTECT, related_name="differences", verbose_name=_("statement run")
    )
    kind = models.CharField(max_length=8, choices=DifferenceKind.choices, verbose_name=_("kind"))
    out_trade_no = models.CharField(max_length=64, blank=True, db_index=True, verbose_name=_("order no"))
    out_refund_no = models.CharField(max_length=64, blank=True, verbose_name=_("refund no"))
    statement_fen = models.BigIntegerField(null=True, blank=True, verbose_name=_("statement (fen)"))
    ledger_fen = models.BigIntegerField(null=True, blank=True, verbose_name=_("ledger (fen)"))
    reason = models.CharField(max_length=300, verbose_name=_("reason"))
    resolved_at = models.DateTimeField(null=True, blank=True, verbose_name=_("resolved at"))
    action = models.CharField(
        max_length=8, choices=DifferenceAction.choices, blank=True, verbose_name=_("action")
    )
    note = models.CharField(max_length=300, blank=True, verbose_name=_("note"))
    resolved_by = models.CharField(max_length=150, blank=True, verbose_name=_("resolved by"))
    posting = posting_field(related_name="+", one=False, optional=True)

    @property
    def reason_display(self) -> str:
        """The stored reason in the reader's language (reasons.py)."""
        return reason_text(self.reason)

    class Meta:
        verbose_name = _("reconciliation difference")
        verbose_name_plural = _("reconciliation differences")
        ordering = ["resolved_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.out_trade_no or self.out_refund_no}"


class ChannelBinding(models.Model):
    """A cardholder's standing authority on a channel (代扣协议 / 委托代扣): what a later repayment (credit
    pay-later) collects through without the payer confirming each time."""

    channel = models.ForeignKey(
        PaymentChannel, on_delete=models.PROTECT, related_name="bindings", verbose_name=_("channel")
    )
    card_no = models.CharField(max_length=19, db_index=True, verbose_name=_("card no"))
    agreement_no = models.CharField(max_length=64, verbose_name=_("agreement no"))
    active = models.BooleanField(default=True, verbose_name=_("active"))
    bound_at = models.DateTimeField(verbose_name=_("bound at"))

    class Meta:
        verbose_name = _("channel binding")
        verbose_name_plural = _("channel bindings")
        constraints = [
            models.UniqueConstraint(
                fields=["card_no"], condition=Q(active=True), name="channelbinding_one_active_per_card"
            )
        ]


class SuspenseState(models.TextChoices):
    OPEN = "open", _("Open (in suspense)")
    MATCHED = "matched", _("Matched to an order or cardholder")
    REFUNDED = "refunded", _("Refunded through the channel")


class SuspenseItem(models.Model):
    """Money the provider received for no order of the city (长款), held in suspense (挂账) until a clerk
    matches it to an order or a cardholder, or refunds it to the payer through the channel. The
    reconciliation posts the day's 长款 to the suspense account in one posting; each item leaves it by its
    own."""

    channel = models.ForeignKey(
        PaymentChannel, on_delete=models.PROTECT, related_name="suspense_items", verbose_name=_("channel")
    )
    difference = models.OneToOneField(
        ReconException, on_delete=models.PROTECT, related_name="suspense_item", verbose_name=_("difference")
    )
    out_trade_no = models.CharField(max_length=64, db_index=True, verbose_name=_("order no"))
    provider_trade_no = models.CharField(max_length=64, blank=True, verbose_name=_("provider trade no"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    state = models.CharField(
        max_length=8, choices=SuspenseState.choices, default=SuspenseState.OPEN, verbose_name=_("state")
    )
    card_no = models.CharField(max_length=19, blank=True, verbose_name=_("card no"))
    order = models.ForeignKey(
        TopupOrder,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("order"),
    )
    refund_no = models.CharField(max_length=64, blank=True, db_index=True, verbose_name=_("refund no"))
    posting = posting_field(
        related_name="+", one=False, optional=True, help_text=_("What took it out of suspense.")
    )
    note = models.CharField(max_length=300, blank=True, verbose_name=_("note"))
    resolved_at = models.DateTimeField(null=True, blank=True, verbose_name=_("resolved at"))
    resolved_by = models.CharField(max_length=150, blank=True, verbose_name=_("resolved by"))

    class Meta:
        verbose_name = _("suspense item")
        verbose_name_plural = _("suspense items")
        ordering = ["state", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="suspenseitem_amount_positive")
        ]

    def __str__(self) -> str:
        return f"{self.channel.code} {self.out_trade_no}"


class ChannelPayout(models.Model):
    """The provider's payout of a statement day's collections, net of fees, to the city's bank account
    (结算划款): the channel's float moves to the bank account; an amount other than the statement's net is
    a difference for a clerk."""

    channel = models.ForeignKey(
        PaymentChannel, on_delete=models.PROTECT, related_name="payouts", verbose_name=_("channel")
    )
    statement_date = models.DateField(verbose_name=_("statement date"))
    bank_reference = models.CharField(max_length=64, verbose_name=_("bank reference"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    expected_fen = models.BigIntegerField(
        help_text=_("The statement's paid less refunded less fees."), verbose_name=_("expected (fen)")
    )
    received_on = models.DateField(verbose_name=_("received on"))
    posting = posting_field(related_name="channel_payout", optional=True)
    difference = models.OneToOneField(
        ReconException,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="payout",
        verbose_name=_("difference"),
    )
    at = models.DateTimeField(verbose_name=_("at"))
    actor = models.CharField(max_length=150, verbose_name=_("actor"))

    class Meta:
        verbose_name = _("channel payout")
        verbose_name_plural = _("channel payouts")
        ordering = ["-statement_date", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "bank_reference"], name="channelpayout_once"),
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="channelpayout_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.channel.code} {self.statement_date} {self.bank_reference}"

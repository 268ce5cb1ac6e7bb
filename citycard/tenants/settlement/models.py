"""The settlement of a cleared cycle on this tenant's ledger (清算资金结算入账), and its differences.

When a clearing cycle settles, the platform's signed reconciliation manifest reaches the tenant's inbox;
the tenant books from the file it names what that cycle cleared of the records its ledger holds: per
counterparty, its interop account ``interop:<counterparty>`` back to what later cycles have not settled yet,
against the city's account at the settlement bank (``bank:interop-settlement``). One ``CycleSettlement`` a
cycle per schema; a record of the file the ledger does not hold as the file says is a
``SettlementDifference`` for a clerk, with its reason.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from citycard.platform.models import ClearingService
from citycard.tenants.accounts.models import posting_field


class RecordRole(models.TextChoices):
    """This ledger's part in a clearing record: the card's city or the terminal's."""

    ISSUER = "issuer", _("Issuer")
    ACQUIRER = "acquirer", _("Acquirer")


class RecordStatus(models.TextChoices):
    """A record's status in the reconciliation file."""

    VALID = "valid", _("Valid")
    REJECTED = "rejected", _("Rejected")


class CycleSettlement(models.Model):
    """One settled clearing cycle as booked on this ledger (结算入账): the file it was booked from, the
    participant's net position there, what the settlement moved to the settlement bank account (+: received)
    and the differences found."""

    cycle = models.CharField(max_length=80, unique=True, verbose_name=_("cycle"))
    service = models.CharField(max_length=20, choices=ClearingService.choices, verbose_name=_("service"))
    participant = models.CharField(
        max_length=30,
        help_text=_("Whose file it is: this city, or for a county its city."),
        verbose_name=_("participant"),
    )
    message_id = models.CharField(max_length=120, verbose_name=_("reconciliation message"))
    file_sha256 = models.CharField(max_length=64, verbose_name=_("file SHA-256"))
    file_net_fen = models.BigIntegerField(
        help_text=_("The participant's net position in the cycle (+: receivable), as the file says."),
        verbose_name=_("net position (fen)"),
    )
    records = models.IntegerField(default=0, verbose_name=_("records settled"))
    settled_fen = models.BigIntegerField(
        default=0,
        help_text=_("Moved to the settlement bank account by this booking (+: received, −: paid)."),
        verbose_name=_("settled (fen)"),
    )
    fees_fen = models.BigIntegerField(
        default=0,
        help_text=_("The cycle's fees on the records settled (+: earned as issuer, −: paid as acquirer)."),
        verbose_name=_("fees (fen)"),
    )
    differences = models.IntegerField(default=0, verbose_name=_("differences"))
    posting = posting_field(related_name="+", optional=True, verbose_name=_("settlement posting"))
    booked_at = models.DateTimeField(verbose_name=_("booked at"))
    actor = models.CharField(max_length=150, verbose_name=_("actor"))

    class Meta:
        verbose_name = _("cycle settlement")
        verbose_name_plural = _("cycle settlements")
        ordering = ["-booked_at", "-id"]

    def __str__(self) -> str:
        return self.cycle


class DifferenceReason(models.TextChoices):
    NOT_BOOKED = "not_booked", _("Cleared, not on this ledger")
    AMOUNT = "amount", _("Booked with another amount")
    REJECTED_BOOKED = "rejected_booked", _("Rejected, still on this ledger")
    ADJUSTMENT = "adjustment", _("A dispute's adjustment, not on this ledger")


class SettlementDifference(models.Model):
    """A record of a settled cycle that the ledger does not hold as the file says (差错): cleared but not
    booked here, booked with another amount, rejected by its issuer but still booked, or a dispute's
    adjustment. Only what the ledger holds as the file says is settled; the rest waits here for a clerk. A
    record not on the ledger then and booked since (a citizen-code fare charged after its cycle settled) is
    settled by its own posting at the next booking and resolved (``services.differences_settle_late``)."""

    settlement = models.ForeignKey(
        CycleSettlement,
        on_delete=models.PROTECT,
        related_name="difference_rows",
        verbose_name=_("cycle settlement"),
    )
    record_id = models.CharField(max_length=80, verbose_name=_("clearing record id"))
    kind = models.CharField(max_length=20, verbose_name=_("kind"))
    role = models.CharField(max_length=10, choices=RecordRole.choices, verbose_name=_("role"))
    counterparty = models.CharField(max_length=30, verbose_name=_("counterparty"))
    status = models.CharField(
        max_length=10, choices=RecordStatus.choices, verbose_name=_("status in the file")
    )
    file_fen = models.BigIntegerField(
        help_text=_("As the ledger would hold it: + owed to the counterparty, − owed by it."),
        verbose_name=_("file (fen)"),
    )
    ledger_fen = models.BigIntegerField(verbose_name=_("ledger (fen)"))
    issuer_fee_fen = models.BigIntegerField(default=0, verbose_name=_("issuer fee (fen)"))
    network_fee_fen = models.BigIntegerField(default=0, verbose_name=_("network fee (fen)"))
    reason = models.CharField(max_length=20, choices=DifferenceReason.choices, verbose_name=_("reason"))
    resolved_at = models.DateTimeField(null=True, blank=True, verbose_name=_("resolved at"))
    resolved_by = models.CharField(max_length=150, blank=True, verbose_name=_("resolved by"))
    note = models.CharField(max_length=300, blank=True, verbose_name=_("note"))
    posting = posting_field(
        related_name="+",
        optional=True,
        verbose_name=_("late settlement posting"),
        help_text=_("A record booked after its cycle settled, settled by its own posting."),
    )

    class Meta:
        verbose_name = _("settlement difference")
        verbose_name_plural = _("settlement differences")
        ordering = ["settlement", "record_id"]
        constraints = [
            models.UniqueConstraint(fields=["settlement", "record_id"], name="settlementdifference_once")
        ]
        indexes = [
            models.Index(fields=["id"], name="settlementdifference_open", condition=Q(resolved_at=None))
        ]

    def __str__(self) -> str:
        return f"{self.settlement.cycle} {self.record_id} {self.reason}"

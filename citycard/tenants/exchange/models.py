"""A tenant's interop mailboxes (in the tenant's own schema).

What leaves the tenant is written to its OUTBOX as a signed envelope (platform.envelopes); the interop
layer collects it from there. What interop sends the tenant (validation requests are answered at once;
exceptions, reconciliation files, hotlist deltas) lands in its INBOX, checked and deduplicated.
``SeenCounter`` is the issuer's memory of card transaction counters already cleared; ``IssuerRejection``
what it answered when it rejected records of its cards.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class OutboxState(models.TextChoices):
    PENDING = "pending", _("Pending (not yet collected)")
    COLLECTED = "collected", _("Collected by interop")
    REFUSED = "refused", _("Refused by interop")


class OutboxMessage(models.Model):
    message_id = models.CharField(max_length=120, unique=True, verbose_name=_("message id"))
    kind = models.CharField(max_length=40, verbose_name=_("kind"))
    recipient = models.CharField(max_length=30, default="public", verbose_name=_("recipient"))
    envelope = models.JSONField(
        help_text=_("The signed envelope, exactly as sent."), verbose_name=_("envelope")
    )
    body_sha256 = models.CharField(max_length=64, verbose_name=_("body sha256"))
    record_count = models.IntegerField(default=0, verbose_name=_("record count"))
    created_at = models.DateTimeField(verbose_name=_("created at"))
    created_by = models.CharField(max_length=150, verbose_name=_("created by"))
    state = models.CharField(
        max_length=10, choices=OutboxState.choices, default=OutboxState.PENDING, verbose_name=_("state")
    )
    collected_at = models.DateTimeField(null=True, blank=True, verbose_name=_("collected at"))
    result = models.JSONField(
        default=dict, blank=True, help_text=_("What interop answered."), verbose_name=_("result")
    )

    class Meta:
        verbose_name = _("outbox message")
        verbose_name_plural = _("outbox messages")
        ordering = ["id"]
        indexes = [models.Index(fields=["state", "id"], name="outbox_state_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.message_id} ({self.state})"


class InboxMessage(models.Model):
    message_id = models.CharField(max_length=120, unique=True, verbose_name=_("message id"))
    kind = models.CharField(max_length=40, verbose_name=_("kind"))
    sender = models.CharField(max_length=30, verbose_name=_("sender"))
    envelope = models.JSONField(verbose_name=_("envelope"))
    body_sha256 = models.CharField(max_length=64, verbose_name=_("body sha256"))
    nonce = models.CharField(max_length=64, verbose_name=_("nonce"))
    received_at = models.DateTimeField(verbose_name=_("received at"))

    class Meta:
        verbose_name = _("inbox message")
        verbose_name_plural = _("inbox messages")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.message_id}"

    @property
    def body(self) -> dict:
        return self.envelope["payload"]["body"]


class SeenCounter(models.Model):
    """Issuer side: a card transaction counter already cleared, and by which record (计数器查重)."""

    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    card_counter = models.BigIntegerField(verbose_name=_("card counter"))
    record_id = models.CharField(max_length=60, verbose_name=_("record id"))
    first_seen_at = models.DateTimeField(verbose_name=_("first seen at"))

    class Meta:
        verbose_name = _("seen counter")
        verbose_name_plural = _("seen counters")
        constraints = [models.UniqueConstraint(fields=["card_no", "card_counter"], name="seencounter_unique")]

    def __str__(self) -> str:
        return f"{self.card_no}#{self.card_counter}"


class IssuerRejection(models.Model):
    """Issuer side: a clearing record of this tenant's cards it rejected when the platform asked it to validate
    a cycle (发卡方拒绝), as it answered — kept so its dashboard lists the exceptions concerning its cards.
    One row per cycle and record: validating the same records again replaces their answer."""

    cycle = models.CharField(max_length=80, verbose_name=_("cycle"))
    record_id = models.CharField(max_length=60, verbose_name=_("record id"))
    request = models.CharField(
        max_length=120,
        help_text=_("The platform's signed validation request that asked."),
        verbose_name=_("request"),
    )
    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    acquirer = models.CharField(max_length=30, verbose_name=_("acquirer"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    reason = models.CharField(max_length=30, verbose_name=_("reason"))
    message = models.TextField(blank=True, verbose_name=_("message"))
    answered_at = models.DateTimeField(verbose_name=_("answered at"))

    class Meta:
        verbose_name = _("issuer rejection")
        verbose_name_plural = _("issuer rejections")
        constraints = [
            models.UniqueConstraint(fields=["cycle", "record_id"], name="issuerrejection_cycle_record")
        ]
        indexes = [models.Index(fields=["answered_at"], name="issuerrejection_answered")]

    def __str__(self) -> str:
        return f"{self.cycle} {self.record_id} {self.reason}"


class TerminalHotlistHead(models.Model):
    """The hotlist this tenant's terminals download (one row): what they must block, from every source.

    ``sources`` fingerprints the parts it was built from (the tenant's own hotlist version, the city's
    published hotlist for a county, the last network hotlist message in the inbox); the version moves
    whenever any of them changes (exchange.terminal_hotlist)."""

    version = models.IntegerField(default=0, verbose_name=_("version"))
    sources = models.JSONField(default=dict, blank=True, verbose_name=_("sources"))
    changed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("changed at"))

    class Meta:
        verbose_name = _("terminal hotlist head")
        verbose_name_plural = _("terminal hotlist heads")


class TerminalHotlistEntry(models.Model):
    """A card on the terminal hotlist from ``version_added`` until ``version_removed`` (for deltas)."""

    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    version_added = models.IntegerField(verbose_name=_("version added"))
    version_removed = models.IntegerField(null=True, blank=True, verbose_name=_("version removed"))

    class Meta:
        verbose_name = _("terminal hotlist entry")
        verbose_name_plural = _("terminal hotlist entries")
        constraints = [
            models.UniqueConstraint(
                fields=["card_no"],
                condition=models.Q(version_removed__isnull=True),
                name="terminal_hotlist_one_live_per_card",
            ),
        ]
        indexes = [models.Index(fields=["version_added"], name="terminal_hotlist_added")]

    def __str__(self) -> str:
        return self.card_no

"""A tenant's interop mailboxes (in the tenant's own schema).

What leaves the tenant is written to its OUTBOX as a signed envelope (platform.envelopes); the interop
layer collects it from there. What interop sends the tenant (validation requests are answered at once;
exceptions, reconciliation files, hotlist deltas) lands in its INBOX, checked and deduplicated.
``SeenCounter`` is the issuer's memory of card transaction counters already cleared.
"""

from __future__ import annotations

from django.db import models


class OutboxState(models.TextChoices):
    PENDING = "pending", "Pending (not yet collected)"
    COLLECTED = "collected", "Collected by interop"
    REFUSED = "refused", "Refused by interop"


class OutboxMessage(models.Model):
    message_id = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=40)
    recipient = models.CharField(max_length=30, default="public")
    envelope = models.JSONField(help_text="The signed envelope, exactly as sent.")
    body_sha256 = models.CharField(max_length=64)
    record_count = models.IntegerField(default=0)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)
    state = models.CharField(max_length=10, choices=OutboxState.choices, default=OutboxState.PENDING)
    collected_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True, help_text="What interop answered.")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["state", "id"], name="outbox_state_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.message_id} ({self.state})"


class InboxMessage(models.Model):
    message_id = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=40)
    sender = models.CharField(max_length=30)
    envelope = models.JSONField()
    body_sha256 = models.CharField(max_length=64)
    nonce = models.CharField(max_length=64)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.message_id}"

    @property
    def body(self) -> dict:
        return self.envelope["payload"]["body"]


class SeenCounter(models.Model):
    """Issuer side: a card transaction counter already cleared, and by which record (计数器查重)."""

    card_no = models.CharField(max_length=19)
    card_counter = models.BigIntegerField()
    record_id = models.CharField(max_length=60)
    first_seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["card_no", "card_counter"], name="seencounter_unique")]

    def __str__(self) -> str:
        return f"{self.card_no}#{self.card_counter}"


class TerminalHotlistHead(models.Model):
    """The hotlist this tenant's terminals download (one row): what they must block, from every source.

    ``sources`` fingerprints the parts it was built from (the tenant's own hotlist version, the city's
    published hotlist for a county, the last network hotlist message in the inbox); the version moves
    whenever any of them changes (exchange.terminal_hotlist)."""

    version = models.IntegerField(default=0)
    sources = models.JSONField(default=dict, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)


class TerminalHotlistEntry(models.Model):
    """A card on the terminal hotlist from ``version_added`` until ``version_removed`` (for deltas)."""

    card_no = models.CharField(max_length=19)
    version_added = models.IntegerField()
    version_removed = models.IntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "terminal hotlist entries"
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

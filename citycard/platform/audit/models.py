"""Audit entries: each entry's hash (SM3) covers its content and the previous entry's hash.

The table lives in the public schema (platform actions) and in every tenant schema (that tenant's
actions), so each schema has its own chain. A trigger refuses UPDATE, DELETE and TRUNCATE; the head row
records the last sequence number and hash so that deleting the newest entries is detected too.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

GENESIS_HASH = "0" * 64


class AuditEntry(models.Model):
    seq = models.BigIntegerField(unique=True, verbose_name=_("seq"))
    at = models.DateTimeField(verbose_name=_("at"))
    actor = models.CharField(max_length=120, verbose_name=_("actor"))
    action = models.CharField(max_length=80, db_index=True, verbose_name=_("action"))
    object_type = models.CharField(max_length=60, blank=True, verbose_name=_("object type"))
    object_id = models.CharField(max_length=80, blank=True, verbose_name=_("object id"))
    payload = models.TextField(
        help_text=_("Canonical JSON of the details, exactly as hashed."), verbose_name=_("payload")
    )
    prev_hash = models.CharField(max_length=64, verbose_name=_("prev hash"))
    hash = models.CharField(max_length=64, unique=True, verbose_name=_("hash"))

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        ordering = ["seq"]
        indexes = [models.Index(fields=["object_type", "object_id", "seq"], name="audit_object_idx")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id} by {self.actor}"


class AuditHead(models.Model):
    """The chain's head: one row (id 1) holding the newest sequence number and hash."""

    seq = models.BigIntegerField(default=0, verbose_name=_("seq"))
    hash = models.CharField(max_length=64, default=GENESIS_HASH, verbose_name=_("hash"))

    class Meta:
        verbose_name = _("audit head")
        verbose_name_plural = _("audit heads")

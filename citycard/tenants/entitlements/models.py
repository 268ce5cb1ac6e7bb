"""Entitlements (权益): rights a department loads onto cards, and each use of one at a service point.

An ``EntitlementType`` is owned by a department (谁主管谁负责): who is eligible, how long it is valid, how
often it may be used, what it costs, and at which service points it is accepted. The city administrator
approves it before it can be granted. An ``Entitlement`` is one cardholder's grant of a type (automatic,
bought, batch or by hand), revocable, every change audited. An ``EntitlementUse`` is one accepted use,
counted against the type's quota. The offline list terminals download is versioned like the hotlist
(``EntitlementListEntry`` rows carry the version that added and removed them).
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class TypeStatus(models.TextChoices):
    DRAFT = "draft", _("Awaiting approval (待审批)")
    APPROVED = "approved", _("Approved (已批准)")
    WITHDRAWN = "withdrawn", _("Withdrawn (已停用)")


class QuotaPeriod(models.TextChoices):
    NONE = "none", _("Unlimited (不限次)")
    DAY = "day", _("Per day (每日)")
    MONTH = "month", _("Per month (每月)")
    YEAR = "year", _("Per year (每年)")


class Residence(models.TextChoices):
    LOCAL_HUKOU = "local_hukou", _("Local household registration (本地户籍)")
    LOCAL_SOCIAL_INSURANCE = "local_social_insurance", _("Local social insurance (本地参保)")
    RESIDENCE_PERMIT = "residence_permit", _("Residence permit (居住证)")


class EntitlementType(models.Model):
    """A right a department puts on cards (权益类型): park annual pass, library borrowing, elderly free
    entry, campus card, canteen meal subsidy, building access."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    department = models.ForeignKey(
        "departments.Department", on_delete=models.PROTECT, related_name="entitlement_types"
    )
    # Eligibility: every non-empty condition must hold (empty: no condition).
    categories = ArrayField(models.CharField(max_length=20), default=list, blank=True)
    age_min = models.PositiveSmallIntegerField(null=True, blank=True)
    age_max = models.PositiveSmallIntegerField(null=True, blank=True)
    residence = ArrayField(
        models.CharField(max_length=30, choices=Residence.choices), default=list, blank=True
    )
    schemes = ArrayField(models.CharField(max_length=2), default=list, blank=True)
    # Validity: fixed dates, or (bought) ``period_days`` from the day of purchase.
    valid_from = models.DateField(null=True, blank=True)
    valid_to = models.DateField(null=True, blank=True)
    period_days = models.PositiveIntegerField(null=True, blank=True)
    quota_period = models.CharField(max_length=5, choices=QuotaPeriod.choices, default=QuotaPeriod.NONE)
    quota = models.PositiveIntegerField(null=True, blank=True, help_text=_("Uses per period."))
    price_fen = models.BigIntegerField(default=0, help_text=_("0: not sold; granted only."))
    service_points = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    auto_grant = models.BooleanField(default=False, help_text=_("Granted to every eligible cardholder."))
    status = models.CharField(max_length=10, choices=TypeStatus.choices, default=TypeStatus.DRAFT)
    approved_by = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(price_fen__gte=0), name="entitlementtype_price_not_negative"),
            models.CheckConstraint(
                condition=Q(quota_period="none", quota__isnull=True)
                | (~Q(quota_period="none") & Q(quota__gt=0)),
                name="entitlementtype_quota_with_period",
            ),
            models.CheckConstraint(
                condition=Q(price_fen=0) | Q(period_days__gt=0),
                name="entitlementtype_sold_for_a_period",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class GrantSource(models.TextChoices):
    AUTO = "auto", _("Automatic (自动)")
    BOUGHT = "bought", _("Bought (购买)")
    BATCH = "batch", _("Batch (批量)")
    MANUAL = "manual", _("By an officer (人工)")


class Entitlement(models.Model):
    """One cardholder's right of a type (权益), from ``valid_from`` to ``valid_to`` (inclusive, empty:
    open-ended) unless revoked. At most one unrevoked grant per type and cardholder."""

    type = models.ForeignKey(EntitlementType, on_delete=models.PROTECT, related_name="grants")
    # By id, as the accounts and the read log keep it: the cards app's migrations stay free of this app.
    cardholder_id = models.BigIntegerField(db_index=True)
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True)
    source = models.CharField(max_length=10, choices=GrantSource.choices)
    posting_id = models.BigIntegerField(
        null=True, blank=True, help_text=_("The ledger posting it was paid by.")
    )
    request_key = models.CharField(max_length=120, null=True, blank=True, unique=True)
    granted_by = models.CharField(max_length=150)
    granted_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)
    revoke_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["cardholder_id", "type_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["type", "cardholder_id"],
                condition=Q(revoked_at__isnull=True),
                name="entitlement_one_live_per_type",
            ),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=models.F("valid_from")),
                name="entitlement_period_ordered",
            ),
        ]


class UseChannel(models.TextChoices):
    CARD = "card", _("Card (刷卡)")
    CODE = "code", _("Citizen code (扫码)")


class EntitlementUse(models.Model):
    """One accepted use (核验记录): counted against the quota; ``use_key`` makes an upload idempotent."""

    entitlement = models.ForeignKey(Entitlement, on_delete=models.PROTECT, related_name="uses")
    service_point = models.CharField(max_length=40)
    card_no = models.CharField(max_length=19)
    channel = models.CharField(max_length=5, choices=UseChannel.choices)
    offline = models.BooleanField(default=False, help_text=_("Decided by the terminal from its list."))
    terminal_id = models.CharField(max_length=40, blank=True)
    use_key = models.CharField(max_length=120, unique=True)
    at = models.DateTimeField()
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["entitlement", "at"], name="entitlementuse_grant_at")]


class EntitlementListHead(models.Model):
    """The offline list's current version (one row): bumped by every change terminals must learn."""

    version = models.IntegerField(default=0)
    changed_at = models.DateTimeField(null=True, blank=True)


class EntitlementListEntry(models.Model):
    """One (card, type) row of the offline list, with the versions that added and removed it."""

    card_no = models.CharField(max_length=19)
    type_code = models.CharField(max_length=40)
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True)
    version_added = models.IntegerField()
    version_removed = models.IntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["version_added"], name="entlist_added"),
            models.Index(fields=["version_removed"], name="entlist_removed"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["card_no", "type_code"],
                condition=Q(version_removed__isnull=True),
                name="entlist_one_live_row",
            ),
        ]


class CodeNonce(models.Model):
    """A citizen-code nonce accepted online: a code is used once (replayed codes are refused)."""

    tenant = models.CharField(max_length=40)
    nonce = models.CharField(max_length=64)
    forget_after = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "nonce"], name="codenonce_once")]


class VisitorUse(models.Model):
    """A use by a visitor's card (异地持卡人), accepted on its home tenant's signed answer (interop): there is
    no local grant, so the local type's quota is counted by card number."""

    type = models.ForeignKey(EntitlementType, on_delete=models.PROTECT, related_name="visitor_uses")
    home_tenant = models.CharField(max_length=30)
    home_type = models.CharField(max_length=40, help_text=_("The home tenant's type the answer vouched for."))
    card_no = models.CharField(max_length=19)
    service_point = models.CharField(max_length=40)
    channel = models.CharField(max_length=5, choices=UseChannel.choices)
    answer_id = models.CharField(max_length=120, help_text=_("The home tenant's signed answer (message id)."))
    use_key = models.CharField(max_length=160, unique=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["card_no", "type", "at"], name="visitoruse_card_type_at")]

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
    DRAFT = "draft", _("Awaiting approval")
    APPROVED = "approved", _("Approved")
    WITHDRAWN = "withdrawn", _("Withdrawn")


class QuotaPeriod(models.TextChoices):
    NONE = "none", _("Unlimited")
    DAY = "day", _("Per day")
    MONTH = "month", _("Per month")
    YEAR = "year", _("Per year")


class Residence(models.TextChoices):
    LOCAL_HUKOU = "local_hukou", _("Local household registration")
    LOCAL_SOCIAL_INSURANCE = "local_social_insurance", _("Local social insurance")
    RESIDENCE_PERMIT = "residence_permit", _("Residence permit")


class EntitlementType(models.Model):
    """A right a department puts on cards (权益类型): park annual pass, library borrowing, elderly free
    entry, campus card, canteen meal subsidy, building access."""

    code = models.SlugField(max_length=40, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, verbose_name=_("name"))
    department = models.ForeignKey(
        "departments.Department",
        on_delete=models.PROTECT,
        related_name="entitlement_types",
        verbose_name=_("department"),
    )
    # Eligibility: every non-empty condition must hold (empty: no condition).
    categories = ArrayField(
        models.CharField(max_length=20), default=list, blank=True, verbose_name=_("cardholder categories")
    )
    age_min = models.PositiveSmallIntegerField(null=True, blank=True, verbose_name=_("minimum age"))
    age_max = models.PositiveSmallIntegerField(null=True, blank=True, verbose_name=_("maximum age"))
    residence = ArrayField(
        models.CharField(max_length=30, choices=Residence.choices),
        default=list,
        blank=True,
        verbose_name=_("residence"),
    )
    schemes = ArrayField(
        models.CharField(max_length=2), default=list, blank=True, verbose_name=_("card schemes")
    )
    # Validity: fixed dates, or (bought) ``period_days`` from the day of purchase.
    valid_from = models.DateField(null=True, blank=True, verbose_name=_("valid from"))
    valid_to = models.DateField(null=True, blank=True, verbose_name=_("valid to"))
    period_days = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("valid for (days)"))
    quota_period = models.CharField(
        max_length=5, choices=QuotaPeriod.choices, default=QuotaPeriod.NONE, verbose_name=_("quota period")
    )
    quota = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Uses per period."), verbose_name=_("quota")
    )
    price_fen = models.BigIntegerField(
        default=0, help_text=_("0: not sold; granted only."), verbose_name=_("price (fen)")
    )
    service_points = ArrayField(
        models.CharField(max_length=40), default=list, blank=True, verbose_name=_("service points")
    )
    auto_grant = models.BooleanField(
        default=False,
        help_text=_("Granted to every eligible cardholder."),
        verbose_name=_("granted automatically"),
    )
    status = models.CharField(
        max_length=10, choices=TypeStatus.choices, default=TypeStatus.DRAFT, verbose_name=_("status")
    )
    approved_by = models.CharField(max_length=150, blank=True, verbose_name=_("approved by"))
    approved_at = models.DateTimeField(null=True, blank=True, verbose_name=_("approved at"))
    created_by = models.CharField(max_length=150, verbose_name=_("created by"))
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("entitlement type")
        verbose_name_plural = _("entitlement types")
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
    AUTO = "auto", _("Automatic")
    BOUGHT = "bought", _("Bought")
    BATCH = "batch", _("Batch")
    MANUAL = "manual", _("By an officer")


class Entitlement(models.Model):
    """One cardholder's right of a type (权益), from ``valid_from`` to ``valid_to`` (inclusive, empty:
    open-ended) unless revoked. At most one unrevoked grant per type and cardholder."""

    type = models.ForeignKey(
        EntitlementType, on_delete=models.PROTECT, related_name="grants", verbose_name=_("entitlement type")
    )
    # By id, as the accounts and the read log keep it: the cards app's migrations stay free of this app.
    cardholder_id = models.BigIntegerField(db_index=True, verbose_name=_("cardholder id"))
    valid_from = models.DateField(verbose_name=_("valid from"))
    valid_to = models.DateField(null=True, blank=True, verbose_name=_("valid to"))
    source = models.CharField(max_length=10, choices=GrantSource.choices, verbose_name=_("source"))
    posting_id = models.BigIntegerField(
        null=True,
        blank=True,
        help_text=_("The ledger posting it was paid by."),
        verbose_name=_("posting id"),
    )
    request_key = models.CharField(
        max_length=120, null=True, blank=True, unique=True, verbose_name=_("request key")
    )
    granted_by = models.CharField(max_length=150, verbose_name=_("granted by"))
    granted_at = models.DateTimeField(verbose_name=_("granted at"))
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("revoked at"))
    revoked_by = models.CharField(max_length=150, blank=True, verbose_name=_("revoked by"))
    revoke_reason = models.CharField(max_length=200, blank=True, verbose_name=_("revocation reason"))

    class Meta:
        verbose_name = _("entitlement")
        verbose_name_plural = _("entitlements")
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
    CARD = "card", _("Card")
    CODE = "code", _("Citizen code")


class EntitlementUse(models.Model):
    """One accepted use (核验记录): counted against the quota; ``use_key`` makes an upload idempotent."""

    entitlement = models.ForeignKey(
        Entitlement, on_delete=models.PROTECT, related_name="uses", verbose_name=_("entitlement")
    )
    service_point = models.CharField(max_length=40, verbose_name=_("service point"))
    card_no = models.CharField(max_length=19, verbose_name=_("card number"))
    channel = models.CharField(max_length=5, choices=UseChannel.choices, verbose_name=_("channel"))
    offline = models.BooleanField(
        default=False, help_text=_("Decided by the terminal from its list."), verbose_name=_("offline")
    )
    terminal_id = models.CharField(max_length=40, blank=True, verbose_name=_("terminal id"))
    use_key = models.CharField(max_length=120, unique=True, verbose_name=_("use key"))
    at = models.DateTimeField(verbose_name=_("used at"))
    recorded_at = models.DateTimeField(verbose_name=_("recorded at"))

    class Meta:
        verbose_name = _("entitlement use")
        verbose_name_plural = _("entitlement uses")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["entitlement", "at"], name="entitlementuse_grant_at")]


class EntitlementListHead(models.Model):
    """The offline list's current version (one row): bumped by every change terminals must learn."""

    version = models.IntegerField(default=0, verbose_name=_("version"))
    changed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("changed at"))

    class Meta:
        verbose_name = _("entitlement list head")
        verbose_name_plural = _("entitlement list heads")


class EntitlementListEntry(models.Model):
    """One (card, type) row of the offline list, with the versions that added and removed it."""

    card_no = models.CharField(max_length=19, verbose_name=_("card number"))
    type_code = models.CharField(max_length=40, verbose_name=_("entitlement type code"))
    valid_from = models.DateField(verbose_name=_("valid from"))
    valid_to = models.DateField(null=True, blank=True, verbose_name=_("valid to"))
    version_added = models.IntegerField(verbose_name=_("version added"))
    version_removed = models.IntegerField(null=True, blank=True, verbose_name=_("version removed"))
    # A visitor's row (异地持卡人): the home tenant that vouched for it in a signed visitor list, and that
    # message's id; empty for this tenant's own cardholders.
    home_tenant = models.CharField(max_length=30, blank=True, default="", verbose_name=_("home tenant"))
    message_id = models.CharField(
        max_length=120,
        blank=True,
        default="",
        help_text=_("The home tenant's signed visitor list that brought this row."),
        verbose_name=_("message id"),
    )

    class Meta:
        verbose_name = _("entitlement list entry")
        verbose_name_plural = _("entitlement list entries")
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

    tenant = models.CharField(max_length=40, verbose_name=_("tenant"))
    nonce = models.CharField(max_length=64, verbose_name=_("nonce"))
    forget_after = models.BigIntegerField(verbose_name=_("forget after"))

    class Meta:
        verbose_name = _("citizen code nonce")
        verbose_name_plural = _("citizen code nonces")
        constraints = [models.UniqueConstraint(fields=["tenant", "nonce"], name="codenonce_once")]


class VisitorUse(models.Model):
    """A use by a visitor's card (异地持卡人), accepted on its home tenant's signed answer (interop): there is
    no local grant, so the local type's quota is counted by card number."""

    type = models.ForeignKey(
        EntitlementType,
        on_delete=models.PROTECT,
        related_name="visitor_uses",
        verbose_name=_("entitlement type"),
    )
    home_tenant = models.CharField(max_length=30, verbose_name=_("home tenant"))
    home_type = models.CharField(
        max_length=40,
        help_text=_("The home tenant's type the answer vouched for."),
        verbose_name=_("home entitlement type"),
    )
    card_no = models.CharField(max_length=19, verbose_name=_("card number"))
    service_point = models.CharField(max_length=40, verbose_name=_("service point"))
    channel = models.CharField(max_length=5, choices=UseChannel.choices, verbose_name=_("channel"))
    answer_id = models.CharField(
        max_length=120,
        help_text=_("The home tenant's signed answer (message id)."),
        verbose_name=_("answer id"),
    )
    use_key = models.CharField(max_length=160, unique=True, verbose_name=_("use key"))
    at = models.DateTimeField(verbose_name=_("used at"))

    class Meta:
        verbose_name = _("visitor's use")
        verbose_name_plural = _("visitors' uses")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["card_no", "type", "at"], name="visitoruse_card_type_at")]


class VisitorList(models.Model):
    """The visitors' entitlements a home tenant vouched for (异地权益名单), as this tenant last took them:
    the home's list version (never older), the recognised types it covered, the signed message."""

    home_tenant = models.CharField(max_length=30, unique=True, verbose_name=_("home tenant"))
    version = models.IntegerField(verbose_name=_("home list version"))
    types = ArrayField(models.CharField(max_length=40), default=list, blank=True, verbose_name=_("types"))
    message_id = models.CharField(max_length=120, verbose_name=_("message id"))
    rows = models.IntegerField(default=0, verbose_name=_("rows"))
    taken_at = models.DateTimeField(verbose_name=_("taken at"))
    # The home's public keys that verify its citizen codes (电子市民码验签公钥), as its signed list named
    # them: {key id: {"public": base64, "verify_until": ISO time or null}} — the current key and those
    # still within their rotation overlap — and the card-number divisions it issues. They go to this
    # tenant's terminals inside its signed offline list, so a gate verifies a visitor's code offline.
    code_keys = models.JSONField(default=dict, blank=True, verbose_name=_("code verification keys"))
    divisions = ArrayField(
        models.CharField(max_length=6), default=list, blank=True, verbose_name=_("card divisions")
    )

    class Meta:
        verbose_name = _("visitors' entitlement list")
        verbose_name_plural = _("visitors' entitlement lists")
        ordering = ["home_tenant"]

    def __str__(self) -> str:
        return f"{self.home_tenant} v{self.version}"

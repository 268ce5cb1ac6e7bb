"""Card schemes (卡种), cardholders (持卡人), cards (卡) and the hotlist (黑名单), in each tenant's schema.

Personal data is stored only encrypted (``*_cipher``), with a keyed blind index for lookups and a masked
form for display (see pii.py). One main card per person is a partial unique index, not only code.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q


class Eligibility(models.TextChoices):
    LOCAL_HUKOU = "local_hukou", "Local household registration (本地户籍)"
    LOCAL_SOCIAL_INSURANCE = "local_social_insurance", "Local social insurance (本地参保)"
    RESIDENCE_PERMIT = "residence_permit", "Residence permit (居住证)"
    ANYONE = "anyone", "Anyone"


class Application(models.TextChoices):
    SOCIAL_SECURITY = "social_security", "Social security (社保)"
    TRANSIT = "transit", "Transit e-purse (电子钱包)"
    ONLINE_ACCOUNT = "online_account", "Online account (市民卡账户)"
    LIBRARY = "library", "Library (图书馆)"
    PARK_PASS = "park_pass", "Park pass (公园年卡)"
    MEDICAL = "medical", "Medical (就医)"


class CategoryCode(models.TextChoices):
    ELDERLY = "elderly", "Elderly (敬老)"
    STUDENT = "student", "Student (学生)"
    DISABLED = "disabled", "Disabled (爱心)"
    VETERAN = "veteran", "Veteran (优抚)"
    LOW_INCOME = "low_income", "Low income (低保)"


class CardScheme(models.Model):
    """A card scheme (卡种): who may hold it, what it does, what it costs. The code is part of card numbers."""

    code = models.CharField(max_length=2, unique=True, help_text="Two digits, e.g. 01.")
    name_zh = models.CharField(max_length=40)
    name_en = models.CharField(max_length=60)
    is_main = models.BooleanField(default=False, help_text="The main citizen card: one per person.")
    eligibility = ArrayField(models.CharField(max_length=30, choices=Eligibility.choices))
    real_name = models.BooleanField(default=True, help_text="Issued to a named cardholder (实名).")
    anonymous_allowed = models.BooleanField(
        default=False, help_text="May be sold without a cardholder (不记名)."
    )
    one_per_person = models.BooleanField(default=False)
    virtual = models.BooleanField(default=False, help_text="No chip: shown as a signed QR code (电子市民码).")
    applications = ArrayField(models.CharField(max_length=30, choices=Application.choices))
    validity_years = models.PositiveSmallIntegerField(default=10)
    card_fee_fen = models.BigIntegerField(default=0)
    replacement_fee_fen = models.BigIntegerField(default=0)
    account_overdraft_fen = models.BigIntegerField(
        default=0, help_text="How far the online account may go below zero (0: never)."
    )
    enabled = models.BooleanField(default=True)
    next_serial = models.BigIntegerField(default=1, help_text="Next card serial of this scheme.")

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(code__regex=r"^[0-9]{2}$"), name="cardscheme_code_2_digits"),
            models.CheckConstraint(
                condition=Q(card_fee_fen__gte=0, replacement_fee_fen__gte=0, account_overdraft_fen__gte=0),
                name="cardscheme_fees_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(real_name=True) | Q(anonymous_allowed=True), name="cardscheme_named_or_anonymous"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name_zh}"


class Sex(models.TextChoices):
    MALE = "M", "Male"
    FEMALE = "F", "Female"


class Cardholder(models.Model):
    """A person holding cards (持卡人). The ID number, phone and address are stored only encrypted, each
    with a masked form for display; no column holds the birth date (it is inside the ID number)."""

    name = models.CharField(max_length=60, db_index=True)
    id_cipher = models.BinaryField(help_text="AES-GCM: nonce || ciphertext of the ID number.")
    id_blind = models.CharField(max_length=64, unique=True, help_text="Keyed blind index of the ID number.")
    id_masked = models.CharField(max_length=18, help_text="First and last characters: 3****************4.")
    phone_cipher = models.BinaryField(null=True, blank=True)
    phone_blind = models.CharField(max_length=64, blank=True, db_index=True)
    phone_masked = models.CharField(max_length=11, blank=True)
    key_id = models.CharField(max_length=60, help_text="The data key every cipher of the row is under.")
    birth_decade = models.PositiveSmallIntegerField(
        help_text="Decade of birth (出生年代), e.g. 1950 for 50后."
    )
    sex = models.CharField(max_length=1, choices=Sex.choices)
    address_cipher = models.BinaryField(null=True, blank=True)
    address_masked = models.CharField(max_length=20, blank=True)
    photo_ref = models.CharField(max_length=200, blank=True, help_text="Where the photo is stored.")
    local_hukou = models.BooleanField(default=False)
    local_social_insurance = models.BooleanField(default=False)
    residence_permit = models.BooleanField(default=False)
    employer = models.CharField(max_length=100, blank=True)
    community = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} {self.id_masked}"


class CardholderCategory(models.Model):
    """A rider category a cardholder belongs to, for a period (敬老/学生/爱心/优抚/低保)."""

    cardholder = models.ForeignKey(Cardholder, on_delete=models.PROTECT, related_name="categories")
    code = models.CharField(max_length=20, choices=CategoryCode.choices)
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True, help_text="Last day valid; empty: open-ended.")
    evidence = models.CharField(max_length=120, blank=True, help_text="Certificate number or source.")

    class Meta:
        ordering = ["cardholder_id", "code", "valid_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["cardholder", "code", "valid_from"], name="category_once_per_start"
            ),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=models.F("valid_from")),
                name="category_period_ordered",
            ),
        ]


class CardState(models.TextChoices):
    APPLIED = "applied", "Applied (已申请)"
    PRODUCED = "produced", "Produced (已制卡)"
    ISSUED = "issued", "Issued (已发卡)"
    ACTIVE = "active", "Active (正常)"
    FROZEN = "frozen", "Frozen / lost (挂失)"
    REPLACED = "replaced", "Replaced (已补换)"
    CANCELLED = "cancelled", "Cancelled (已注销)"


LIVE_STATES = (CardState.APPLIED, CardState.PRODUCED, CardState.ISSUED, CardState.ACTIVE, CardState.FROZEN)


class Card(models.Model):
    """One card (卡). Its number: division code + scheme code + serial + Luhn (terminal_kit.cardno)."""

    card_no = models.CharField(max_length=19, unique=True)
    scheme = models.ForeignKey(CardScheme, on_delete=models.PROTECT, related_name="cards")
    cardholder = models.ForeignKey(
        Cardholder, on_delete=models.PROTECT, null=True, blank=True, related_name="cards"
    )
    is_main = models.BooleanField(
        default=False, help_text="Copied from the scheme: one live main card per person."
    )
    state = models.CharField(max_length=10, choices=CardState.choices, default=CardState.APPLIED)
    applied_at = models.DateTimeField()
    produced_at = models.DateTimeField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    ss_activated_at = models.DateTimeField(
        null=True, blank=True, help_text="Social-security activation (社保激活)."
    )
    frozen_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    expires_on = models.DateField(null=True, blank=True)
    fee_fen = models.BigIntegerField(default=0)
    replaces = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="replaced_by"
    )
    source = models.CharField(max_length=80, blank=True, help_text="Channel or import batch it came from.")
    request_key = models.CharField(
        max_length=80, null=True, blank=True, unique=True, help_text="Idempotency key of the application."
    )

    class Meta:
        ordering = ["card_no"]
        indexes = [models.Index(fields=["cardholder", "state"], name="card_holder_state")]
        constraints = [
            # 一人一卡: at most one live main card per cardholder, enforced by the database. "Live" is
            # "not closed": closed_at is set exactly when a card is replaced or cancelled (checked below).
            models.UniqueConstraint(
                fields=["cardholder"],
                condition=Q(is_main=True, closed_at__isnull=True),
                name="card_one_live_main_per_person",
            ),
            models.CheckConstraint(
                condition=(Q(closed_at__isnull=True) & ~Q(state="replaced") & ~Q(state="cancelled"))
                | (Q(closed_at__isnull=False) & (Q(state="replaced") | Q(state="cancelled"))),
                name="card_closed_iff_replaced_or_cancelled",
            ),
            models.CheckConstraint(condition=Q(card_no__regex=r"^[0-9]{19}$"), name="card_no_19_digits"),
            models.CheckConstraint(
                condition=Q(is_main=False) | Q(cardholder__isnull=False), name="card_main_is_named"
            ),
        ]

    def __str__(self) -> str:
        return self.card_no


class HotlistHead(models.Model):
    """The hotlist's current version (one row, seeded by the migration): bumped by every change."""

    version = models.IntegerField(default=0)
    changed_at = models.DateTimeField(null=True, blank=True)


class HotlistEntry(models.Model):
    """A card on the hotlist (黑名单) from ``listed_at`` until ``removed_at``; versions say when terminals
    learnt of the listing and of the removal."""

    card_no = models.CharField(max_length=19)
    reason = models.CharField(max_length=20)
    listed_at = models.DateTimeField(help_text="Effective time: taps after it are refused.")
    version_added = models.IntegerField()
    removed_at = models.DateTimeField(null=True, blank=True)
    version_removed = models.IntegerField(null=True, blank=True)
    actor = models.CharField(max_length=150)

    class Meta:
        ordering = ["-listed_at"]
        verbose_name_plural = "hotlist entries"
        indexes = [models.Index(fields=["card_no", "listed_at"], name="hotlist_card_listed")]
        constraints = [
            models.UniqueConstraint(
                fields=["card_no"], condition=Q(removed_at__isnull=True), name="hotlist_one_open_per_card"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card_no} ({self.reason})"

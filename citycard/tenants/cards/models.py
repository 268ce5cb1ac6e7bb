"""Card schemes (卡种), cardholders (持卡人), cards (卡) and the hotlist (黑名单), in each tenant's schema.

Personal data is stored only encrypted (``*_cipher``), with a keyed blind index for lookups and a masked
form for display (see pii.py). One main card per person is a partial unique index, not only code.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Eligibility(models.TextChoices):
    LOCAL_HUKOU = "local_hukou", _("Local household registration")
    LOCAL_SOCIAL_INSURANCE = "local_social_insurance", _("Local social insurance")
    RESIDENCE_PERMIT = "residence_permit", _("Residence permit")
    ANYONE = "anyone", _("Anyone")


class Application(models.TextChoices):
    SOCIAL_SECURITY = "social_security", _("Social security")
    TRANSIT = "transit", _("Transit e-purse")
    ONLINE_ACCOUNT = "online_account", _("Online account")
    LIBRARY = "library", _("Library")
    PARK_PASS = "park_pass", _("Park pass")
    MEDICAL = "medical", _("Medical")


class CategoryCode(models.TextChoices):
    ELDERLY = "elderly", _("Elderly")
    STUDENT = "student", _("Student")
    DISABLED = "disabled", _("Disabled")
    VETERAN = "veteran", _("Veteran")
    LOW_INCOME = "low_income", _("Low income")


class CardScheme(models.Model):
    """A card scheme (卡种): who may hold it, what it does, what it costs. The code is part of card numbers."""

    code = models.CharField(
        max_length=2, unique=True, help_text=_("Two digits, e.g. 01."), verbose_name=_("code")
    )
    name_zh = models.CharField(max_length=40, verbose_name=_("name zh"))
    name_en = models.CharField(max_length=60, verbose_name=_("name en"))
    is_main = models.BooleanField(
        default=False, help_text=_("The main citizen card: one per person."), verbose_name=_("is main")
    )
    eligibility = ArrayField(
        models.CharField(max_length=30, choices=Eligibility.choices), verbose_name=_("eligibility")
    )
    real_name = models.BooleanField(
        default=True, help_text=_("Issued to a named cardholder (实名)."), verbose_name=_("real name")
    )
    anonymous_allowed = models.BooleanField(
        default=False,
        help_text=_("May be sold without a cardholder (不记名)."),
        verbose_name=_("anonymous allowed"),
    )
    one_per_person = models.BooleanField(default=False, verbose_name=_("one per person"))
    virtual = models.BooleanField(
        default=False,
        help_text=_("No chip: shown as a signed QR code (电子市民码)."),
        verbose_name=_("virtual"),
    )
    applications = ArrayField(
        models.CharField(max_length=30, choices=Application.choices), verbose_name=_("applications")
    )
    validity_years = models.PositiveSmallIntegerField(default=10, verbose_name=_("validity years"))
    card_fee_fen = models.BigIntegerField(default=0, verbose_name=_("card fee (fen)"))
    replacement_fee_fen = models.BigIntegerField(default=0, verbose_name=_("replacement fee (fen)"))
    account_overdraft_fen = models.BigIntegerField(
        default=0,
        help_text=_("How far the online account may go below zero (0: never)."),
        verbose_name=_("account overdraft (fen)"),
    )
    enabled = models.BooleanField(default=True, verbose_name=_("enabled"))
    next_serial = models.BigIntegerField(
        default=1, help_text=_("Next card serial of this scheme."), verbose_name=_("next serial")
    )

    class Meta:
        verbose_name = _("card scheme")
        verbose_name_plural = _("card schemes")
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
    MALE = "M", _("Male")
    FEMALE = "F", _("Female")


class Cardholder(models.Model):
    """A person holding cards (持卡人). The ID number, phone and address are stored only encrypted, each
    with a masked form for display; no column holds the birth date (it is inside the ID number)."""

    name = models.CharField(max_length=60, db_index=True, verbose_name=_("name"))
    id_cipher = models.BinaryField(
        help_text=_("AES-GCM: nonce || ciphertext of the ID number."), verbose_name=_("id cipher")
    )
    id_blind = models.CharField(
        max_length=64,
        unique=True,
        help_text=_("Keyed blind index of the ID number."),
        verbose_name=_("id blind"),
    )
    id_masked = models.CharField(
        max_length=18,
        help_text=_("First and last characters: 3****************4."),
        verbose_name=_("id masked"),
    )
    phone_cipher = models.BinaryField(null=True, blank=True, verbose_name=_("phone cipher"))
    phone_blind = models.CharField(max_length=64, blank=True, db_index=True, verbose_name=_("phone blind"))
    phone_masked = models.CharField(max_length=11, blank=True, verbose_name=_("phone masked"))
    key_id = models.CharField(
        max_length=60, help_text=_("The data key every cipher of the row is under."), verbose_name=_("key id")
    )
    birth_decade = models.PositiveSmallIntegerField(
        help_text=_("Decade of birth (出生年代), e.g. 1950 for 50后."), verbose_name=_("birth decade")
    )
    sex = models.CharField(max_length=1, choices=Sex.choices, verbose_name=_("sex"))
    address_cipher = models.BinaryField(null=True, blank=True, verbose_name=_("address cipher"))
    address_masked = models.CharField(max_length=20, blank=True, verbose_name=_("address masked"))
    photo_ref = models.CharField(
        max_length=200, blank=True, help_text=_("Where the photo is stored."), verbose_name=_("photo ref")
    )
    local_hukou = models.BooleanField(default=False, verbose_name=_("local hukou"))
    local_social_insurance = models.BooleanField(default=False, verbose_name=_("local social insurance"))
    residence_permit = models.BooleanField(default=False, verbose_name=_("residence permit"))
    employer = models.CharField(max_length=100, blank=True, verbose_name=_("employer"))
    community = models.CharField(max_length=100, blank=True, verbose_name=_("community"))
    created_at = models.DateTimeField(verbose_name=_("created at"))
    created_by = models.CharField(max_length=150, verbose_name=_("created by"))

    class Meta:
        verbose_name = _("cardholder")
        verbose_name_plural = _("cardholders")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} {self.id_masked}"


class CardholderCategory(models.Model):
    """A rider category a cardholder belongs to, for a period (敬老/学生/爱心/优抚/低保)."""

    cardholder = models.ForeignKey(
        Cardholder, on_delete=models.PROTECT, related_name="categories", verbose_name=_("cardholder")
    )
    code = models.CharField(max_length=20, choices=CategoryCode.choices, verbose_name=_("code"))
    valid_from = models.DateField(verbose_name=_("valid from"))
    valid_to = models.DateField(
        null=True, blank=True, help_text=_("Last day valid; empty: open-ended."), verbose_name=_("valid to")
    )
    evidence = models.CharField(
        max_length=120, blank=True, help_text=_("Certificate number or source."), verbose_name=_("evidence")
    )

    class Meta:
        verbose_name = _("cardholder category")
        verbose_name_plural = _("cardholder categories")
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
    APPLIED = "applied", _("Applied")
    PRODUCED = "produced", _("Produced")
    ISSUED = "issued", _("Issued")
    ACTIVE = "active", _("Active")
    FROZEN = "frozen", _("Frozen / lost")
    REPLACED = "replaced", _("Replaced")
    CANCELLED = "cancelled", _("Cancelled")


LIVE_STATES = (CardState.APPLIED, CardState.PRODUCED, CardState.ISSUED, CardState.ACTIVE, CardState.FROZEN)


class Card(models.Model):
    """One card (卡). Its number: division code + scheme code + serial + Luhn (terminal_kit.cardno)."""

    card_no = models.CharField(max_length=19, unique=True, verbose_name=_("card no"))
    scheme = models.ForeignKey(
        CardScheme, on_delete=models.PROTECT, related_name="cards", verbose_name=_("scheme")
    )
    cardholder = models.ForeignKey(
        Cardholder,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="cards",
        verbose_name=_("cardholder"),
    )
    is_main = models.BooleanField(
        default=False,
        help_text=_("Copied from the scheme: one live main card per person."),
        verbose_name=_("is main"),
    )
    state = models.CharField(
        max_length=10, choices=CardState.choices, default=CardState.APPLIED, verbose_name=_("state")
    )
    applied_at = models.DateTimeField(verbose_name=_("applied at"))
    produced_at = models.DateTimeField(null=True, blank=True, verbose_name=_("produced at"))
    issued_at = models.DateTimeField(null=True, blank=True, verbose_name=_("issued at"))
    activated_at = models.DateTimeField(null=True, blank=True, verbose_name=_("activated at"))
    ss_activated_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Social-security activation (社保激活)."),
        verbose_name=_("ss activated at"),
    )
    frozen_at = models.DateTimeField(null=True, blank=True, verbose_name=_("frozen at"))
    closed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("closed at"))
    expires_on = models.DateField(null=True, blank=True, verbose_name=_("expires on"))
    fee_fen = models.BigIntegerField(default=0, verbose_name=_("fee (fen)"))
    replaces = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="replaced_by",
        verbose_name=_("replaces"),
    )
    source = models.CharField(
        max_length=80,
        blank=True,
        help_text=_("Channel or import batch it came from."),
        verbose_name=_("source"),
    )
    request_key = models.CharField(
        max_length=80,
        null=True,
        blank=True,
        unique=True,
        help_text=_("Idempotency key of the application."),
        verbose_name=_("request key"),
    )

    class Meta:
        verbose_name = _("card")
        verbose_name_plural = _("cards")
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

    version = models.IntegerField(default=0, verbose_name=_("version"))
    changed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("changed at"))

    class Meta:
        verbose_name = _("hotlist head")
        verbose_name_plural = _("hotlist heads")


class HotlistEntry(models.Model):
    """A card on the hotlist (黑名单) from ``listed_at`` until ``removed_at``; versions say when terminals
    learnt of the listing and of the removal."""

    card_no = models.CharField(max_length=19, verbose_name=_("card no"))
    reason = models.CharField(max_length=20, verbose_name=_("reason"))
    listed_at = models.DateTimeField(
        help_text=_("Effective time: taps after it are refused."), verbose_name=_("listed at")
    )
    version_added = models.IntegerField(verbose_name=_("version added"))
    removed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("removed at"))
    version_removed = models.IntegerField(null=True, blank=True, verbose_name=_("version removed"))
    actor = models.CharField(max_length=150, verbose_name=_("actor"))

    class Meta:
        verbose_name = _("hotlist entry")
        verbose_name_plural = _("hotlist entries")
        ordering = ["-listed_at"]
        indexes = [models.Index(fields=["card_no", "listed_at"], name="hotlist_card_listed")]
        constraints = [
            models.UniqueConstraint(
                fields=["card_no"], condition=Q(removed_at__isnull=True), name="hotlist_one_open_per_card"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card_no} ({self.reason})"

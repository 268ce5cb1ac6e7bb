"""Medical roaming data in a tenant's schema: as treatment place (catalogue, claims its hospitals submit)
and as insured place (its policies, its insured persons' year-to-date use, the claims it adjudicated, the
years it closed).

Money is integer fen (分) throughout; shares and ratios are basis points (1/10000).
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _


class Coverage(models.TextChoices):
    """The catalogue class of an item (医保目录甲乙丙类)."""

    A = "A", _("Class A: fully covered")
    B = "B", _("Class B: covered after the patient's self-pay share")
    C = "C", _("Class C: self-pay")


class ItemCategory(models.TextChoices):
    """What an item is; a policy's reimbursement ratio is set per category. Shared by every city, so a
    treatment place's categories are the insured place's."""

    DRUG = "drug", _("Drugs")
    TREATMENT = "treatment", _("Examinations and treatment")
    MATERIAL = "material", _("Medical materials")
    FACILITY = "facility", _("Beds and facilities")


class InsuredCategory(models.TextChoices):
    """Which scheme a person is insured under; each has its own policy."""

    EMPLOYEE = "employee", _("Employees' basic medical insurance")
    RESIDENT = "resident", _("Urban and rural residents' medical insurance")


class CatalogueItem(models.Model):
    """An item of the treatment place's catalogue: price, category, class."""

    code = models.CharField(_("code"), max_length=30, unique=True)
    name = models.CharField(_("name"), max_length=100)
    category = models.CharField(_("category"), max_length=20, choices=ItemCategory.choices)
    unit_price_fen = models.BigIntegerField(_("unit price (fen)"))
    coverage = models.CharField(_("class"), max_length=1, choices=Coverage.choices)
    self_pay_bps = models.PositiveIntegerField(
        _("self-pay share (bps)"),
        default=0,
        help_text=_("Class B only: the share the patient pays first, in basis points (1000 = 10%)."),
    )
    active = models.BooleanField(
        _("in the catalogue"),
        default=True,
        help_text=_("A withdrawn item is outside the catalogue: the patient pays it."),
    )

    class Meta:
        ordering = ["code"]
        verbose_name = _("catalogue item")
        verbose_name_plural = _("catalogue")
        constraints = [
            models.CheckConstraint(name="catalogue_price_positive", condition=Q(unit_price_fen__gte=0)),
            models.CheckConstraint(
                name="catalogue_self_pay_only_class_b",
                condition=Q(self_pay_bps__lte=10000) & (Q(coverage="B") | Q(self_pay_bps=0)),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class Policy(models.Model):
    """The insured place's policy for cross-city treatment (参保地待遇): per insured category and year, in
    force from ``effective_from`` to ``effective_to`` (both inclusive, within the year). 起付线, 报销比例
    per item category, 封顶线. A policy claims were adjudicated under keeps its amounts."""

    category = models.CharField(
        _("insured category"),
        max_length=10,
        choices=InsuredCategory.choices,
        default=InsuredCategory.EMPLOYEE,
    )
    year = models.PositiveIntegerField(_("year"))
    effective_from = models.DateField(_("in force from"))
    effective_to = models.DateField(_("in force until"), help_text=_("Last day in force (inclusive)."))
    deductible_fen = models.BigIntegerField(
        _("deductible (fen)"), help_text=_("Deductible: eligible spending the insured pays first each year.")
    )
    ratios_bps = models.JSONField(
        _("reimbursement ratios (bps)"),
        help_text=_(
            "Reimbursement ratios: {item category: basis points}; a category not listed is not reimbursed."
        ),
    )
    annual_cap_fen = models.BigIntegerField(
        _("annual cap (fen)"), help_text=_("Annual cap: the most the fund pays for one person in a year.")
    )

    class Meta:
        ordering = ["-year", "category", "effective_from"]
        verbose_name = _("policy")
        verbose_name_plural = _("policies")
        constraints = [
            models.UniqueConstraint(fields=["category", "effective_from"], name="policy_once_per_start"),
            models.CheckConstraint(
                name="policy_period_in_year",
                condition=Q(effective_to__gte=F("effective_from"))
                & Q(effective_from__year=F("year"))
                & Q(effective_to__year=F("year")),
            ),
            models.CheckConstraint(
                name="policy_amounts_not_negative", condition=Q(deductible_fen__gte=0, annual_cap_fen__gte=0)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_category_display()} {self.effective_from}–{self.effective_to}"


class InsuredYear(models.Model):
    """One insured person's (card's) year so far: their insured category, deductible used, fund paid."""

    card_no = models.CharField(_("card number"), max_length=19)
    year = models.PositiveIntegerField(_("year"))
    category = models.CharField(
        _("insured category"),
        max_length=10,
        choices=InsuredCategory.choices,
        default=InsuredCategory.EMPLOYEE,
    )
    deductible_used_fen = models.BigIntegerField(_("deductible used (fen)"), default=0)
    fund_paid_fen = models.BigIntegerField(_("fund paid (fen)"), default=0)

    class Meta:
        ordering = ["-year", "card_no"]
        verbose_name = _("insured person's year")
        verbose_name_plural = _("insured persons' years")
        constraints = [
            models.UniqueConstraint(fields=["card_no", "year"], name="insured_year_unique"),
            models.CheckConstraint(
                name="insured_year_not_negative",
                condition=Q(deductible_used_fen__gte=0, fund_paid_fen__gte=0),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card_no} {self.year}"


class ClosedYear(models.Model):
    """A year the insured place has closed (年度清算): claims treated in it are refused as a whole."""

    year = models.PositiveIntegerField(_("year"), unique=True)
    closed_at = models.DateTimeField(_("closed at"))
    closed_by = models.CharField(_("closed by"), max_length=150)

    class Meta:
        ordering = ["-year"]
        verbose_name = _("closed year")
        verbose_name_plural = _("closed years")

    def __str__(self) -> str:
        return str(self.year)


class ClaimRole(models.TextChoices):
    TREATMENT = "treatment", _("Submitted by our hospital (treatment place)")
    INSURED = "insured", _("Adjudicated for our insured person")


class Claim(models.Model):
    """A cross-city claim, as the treatment place holds it (``treatment``: priced lines, what it sent) or
    as the insured place holds it (``insured``: the lines it was sent, its adjudication).

    ``items`` are the priced lines, one per item: code, name, category, class, quantity, unit price,
    amount, eligible and self-pay fen, and the line's outcome (``covered``, ``partly_covered``,
    ``self_pay``, ``not_in_catalogue``)."""

    claim_id = models.CharField(_("claim id"), max_length=60)
    role = models.CharField(_("role"), max_length=10, choices=ClaimRole.choices)
    card_no = models.CharField(_("card number"), max_length=19)
    department = models.CharField(_("hospital"), max_length=100, blank=True)
    treated_at = models.DateTimeField(_("treated at"))
    total_fen = models.BigIntegerField(_("total (fen)"))
    eligible = models.JSONField(_("eligible (fen) per category"), help_text=_("{category: eligible fen}"))
    fund_fen = models.BigIntegerField(_("fund share (fen)"), null=True, blank=True)
    patient_fen = models.BigIntegerField(_("patient share (fen)"), null=True, blank=True)
    items = models.JSONField(_("lines"), default=list)
    detail = models.JSONField(default=dict, blank=True, verbose_name=_("detail"))
    # Treatment place: the hospital's own claim id, what it sent (for idempotent resubmission), by whom.
    hospital_claim_no = models.CharField(_("hospital's claim id"), max_length=40, blank=True)
    request_sha256 = models.CharField(max_length=64, blank=True, verbose_name=_("request sha256"))
    submitted_at = models.DateTimeField(_("submitted at"), null=True, blank=True)
    submitted_by = models.CharField(_("submitted by"), max_length=150, blank=True)
    # Insured place: the person's category and the policy the claim was adjudicated under, if any.
    insured_category = models.CharField(
        _("insured category"), max_length=10, choices=InsuredCategory.choices, blank=True
    )
    policy = models.ForeignKey(
        Policy,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="claims",
        verbose_name=_("policy"),
    )
    refusal = models.CharField(
        _("refused"),
        max_length=20,
        blank=True,
        help_text=_("Why nothing of the claim could be adjudicated (not_insured, year_closed, no_policy)."),
    )

    class Meta:
        ordering = ["-treated_at", "-id"]
        verbose_name = _("claim")
        verbose_name_plural = _("claims")
        constraints = [models.UniqueConstraint(fields=["claim_id", "role"], name="claim_unique_per_role")]
        indexes = [models.Index(fields=["card_no", "treated_at"], name="claim_card_treated")]

    def __str__(self) -> str:
        return self.claim_id

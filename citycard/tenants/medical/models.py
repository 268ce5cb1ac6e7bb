"""Medical roaming data in a tenant's schema: as treatment place (catalogue, claims its hospitals submit)
and as insured place (its policy, its insured persons' year-to-date usage, the claims it adjudicated)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Coverage(models.TextChoices):
    A = "A", "甲类: fully eligible"
    B = "B", "乙类: eligible after the patient's first self-pay share"
    C = "C", "丙类: not covered"


class CatalogueItem(models.Model):
    """An item of the treatment place's catalogue (医保目录): price, category, coverage class."""

    code = models.CharField(max_length=30, unique=True)
    name = models.CharField(max_length=100)
    category = models.CharField(max_length=20, help_text="drug, treatment, material, bed…")
    unit_price_fen = models.BigIntegerField()
    coverage = models.CharField(max_length=1, choices=Coverage.choices)
    self_pay_bps = models.PositiveIntegerField(
        default=0, help_text="乙类 first self-pay share, basis points."
    )

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(name="catalogue_price_positive", condition=Q(unit_price_fen__gte=0))
        ]


class Policy(models.Model):
    """The insured place's policy for cross-city treatment (参保地待遇), one per year."""

    year = models.PositiveIntegerField(unique=True)
    deductible_fen = models.BigIntegerField(
        help_text="起付线: eligible spending the insured pays first each year."
    )
    ratios_bps = models.JSONField(help_text="{category: reimbursement ratio in basis points}; absent: 0.")
    annual_cap_fen = models.BigIntegerField(help_text="封顶线: most the fund pays for one person in a year.")


class InsuredYear(models.Model):
    """One insured person's (card's) year so far: deductible used and fund paid."""

    card_no = models.CharField(max_length=19)
    year = models.PositiveIntegerField()
    deductible_used_fen = models.BigIntegerField(default=0)
    fund_paid_fen = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["card_no", "year"], name="insured_year_unique")]


class ClaimRole(models.TextChoices):
    TREATMENT = "treatment", "Submitted by our hospital (treatment place)"
    INSURED = "insured", "Adjudicated for our insured person"


class Claim(models.Model):
    claim_id = models.CharField(max_length=60)
    role = models.CharField(max_length=10, choices=ClaimRole.choices)
    card_no = models.CharField(max_length=19)
    department = models.CharField(max_length=60, blank=True)
    treated_at = models.DateTimeField()
    total_fen = models.BigIntegerField()
    eligible = models.JSONField(help_text="{category: eligible fen}")
    fund_fen = models.BigIntegerField(null=True, blank=True)
    patient_fen = models.BigIntegerField(null=True, blank=True)
    items = models.JSONField(default=list)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["claim_id", "role"], name="claim_unique_per_role")]

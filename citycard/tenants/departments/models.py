"""Departments (部门), their service points (窗口) and data grants (数据授权) with the read log (谁使用、谁负责)."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _


class DepartmentKind(models.TextChoices):
    HRSS = "hrss", "Human resources & social security (人社)"
    POLICE = "police", "Public security (公安)"
    HEALTH = "health", "Health (卫健)"
    MEDICAL_INSURANCE = "medical_insurance", "Medical insurance (医保)"
    TRANSPORT = "transport", "Transport (交通)"
    CIVIL_AFFAIRS = "civil_affairs", "Civil affairs (民政)"
    CULTURE_TOURISM = "culture_tourism", "Culture & tourism (文旅)"
    EDUCATION = "education", "Education (教育)"
    FINANCE = "finance", "Finance (财政)"
    DISABLED_FEDERATION = "disabled_federation", "Disabled persons' federation (残联)"
    BANK = "bank", "Bank"
    UTILITY = "utility", "Utility"
    OTHER = "other", "Other"


class PiiField(models.TextChoices):
    """Cardholder fields a department may be granted."""

    NAME = "name", "Name"
    ID_NUMBER = "id_number", "ID number"
    PHONE = "phone", "Phone"
    ADDRESS = "address", "Address"
    BIRTH_DATE = "birth_date", "Birth date"
    SEX = "sex", "Sex"
    CATEGORIES = "categories", "Rider categories"
    CARDS = "cards", "Cards and their states"


class ServiceKind(models.TextChoices):
    APPLY = "apply", "Card application (申领)"
    ISSUE = "issue", "Issuance / collection (领卡)"
    LOSS = "loss", "Loss report (挂失)"
    REPLACE = "replace", "Replacement (补换)"
    SS_ACTIVATE = "ss_activate", "Social-security activation (社保激活)"
    TOPUP = "topup", "Top-up (充值)"
    ENQUIRY = "enquiry", "Enquiry (查询)"
    ENTRY = "entry", "Entitlement acceptance: entry, borrowing, meals (权益核验)"


class Department(models.Model):
    code = models.SlugField(max_length=40, unique=True)
    kind = models.CharField(max_length=20, choices=DepartmentKind.choices)
    name = models.CharField(max_length=100)
    contact = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class ServicePoint(models.Model):
    """A service window (服务网点/窗口): where, when, and which services it offers."""

    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="service_points")
    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    address = models.CharField(max_length=200)
    hours = models.CharField(max_length=100, help_text="e.g. 周一至周五 8:30-17:00")
    services = ArrayField(models.CharField(max_length=20, choices=ServiceKind.choices))
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class DataGrant(models.Model):
    """Which cardholder fields a department may read, for what purpose, until when."""

    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="grants")
    fields = ArrayField(models.CharField(max_length=20, choices=PiiField.choices))
    purpose = models.CharField(max_length=200)
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    granted_by = models.CharField(max_length=150)
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["department_id", "-valid_from"]


class DataRead(models.Model):
    """One read of a cardholder's data through a grant: who, which department, whom, which fields, why."""

    grant = models.ForeignKey(DataGrant, on_delete=models.PROTECT, related_name="reads")
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="reads")
    cardholder_id = models.BigIntegerField()
    reader = models.CharField(max_length=150)
    fields = ArrayField(models.CharField(max_length=20))
    reason = models.CharField(max_length=200)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["cardholder_id", "at"], name="dataread_holder_at")]


class Onboarding(Department):
    """The onboarding checklist's admin page (入驻清单): a proxy with no table of its own, so the page has a
    place and a permission on the tenant's admin site (selectors.onboarding_overview fills it)."""

    class Meta:
        proxy = True
        verbose_name = _("onboarding checklist (入驻清单)")
        verbose_name_plural = _("onboarding checklist (入驻清单)")

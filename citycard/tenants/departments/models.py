"""Departments (部门), their service points (窗口) and data grants (数据授权) with the read log (谁使用、谁负责)."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _


class DepartmentKind(models.TextChoices):
    HRSS = "hrss", _("Human resources & social security")
    POLICE = "police", _("Public security")
    HEALTH = "health", _("Health")
    MEDICAL_INSURANCE = "medical_insurance", _("Medical insurance")
    TRANSPORT = "transport", _("Transport")
    CIVIL_AFFAIRS = "civil_affairs", _("Civil affairs")
    CULTURE_TOURISM = "culture_tourism", _("Culture & tourism")
    EDUCATION = "education", _("Education")
    FINANCE = "finance", _("Finance")
    DISABLED_FEDERATION = "disabled_federation", _("Disabled persons' federation")
    BANK = "bank", _("Bank")
    UTILITY = "utility", _("Utility")
    OTHER = "other", _("Other")


class PiiField(models.TextChoices):
    """Cardholder fields a department may be granted."""

    NAME = "name", _("Name")
    ID_NUMBER = "id_number", _("ID number")
    PHONE = "phone", _("Phone")
    ADDRESS = "address", _("Address")
    BIRTH_DATE = "birth_date", _("Birth date")
    SEX = "sex", _("Sex")
    CATEGORIES = "categories", _("Rider categories")
    CARDS = "cards", _("Cards and their states")


class ServiceKind(models.TextChoices):
    APPLY = "apply", _("Card application")
    ISSUE = "issue", _("Issuance / collection")
    LOSS = "loss", _("Loss report")
    REPLACE = "replace", _("Replacement")
    SS_ACTIVATE = "ss_activate", _("Social-security activation")
    TOPUP = "topup", _("Top-up")
    ENQUIRY = "enquiry", _("Enquiry")
    ENTRY = "entry", _("Entitlement acceptance: entry, borrowing, meals")


class Department(models.Model):
    code = models.SlugField(max_length=40, unique=True, verbose_name=_("code"))
    kind = models.CharField(max_length=20, choices=DepartmentKind.choices, verbose_name=_("kind"))
    name = models.CharField(max_length=100, verbose_name=_("name"))
    contact = models.CharField(max_length=100, blank=True, verbose_name=_("contact"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("department")
        verbose_name_plural = _("departments")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class ServicePoint(models.Model):
    """A service window (服务网点/窗口): where, when, and which services it offers."""

    department = models.ForeignKey(
        Department, on_delete=models.PROTECT, related_name="service_points", verbose_name=_("department")
    )
    code = models.SlugField(max_length=40, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, verbose_name=_("name"))
    address = models.CharField(max_length=200, verbose_name=_("address"))
    hours = models.CharField(
        max_length=100, help_text=_("e.g. 周一至周五 8:30-17:00"), verbose_name=_("hours")
    )
    services = ArrayField(
        models.CharField(max_length=20, choices=ServiceKind.choices), verbose_name=_("services")
    )
    active = models.BooleanField(default=True, verbose_name=_("active"))

    class Meta:
        verbose_name = _("service point")
        verbose_name_plural = _("service points")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class DataGrant(models.Model):
    """Which cardholder fields a department may read, for what purpose, until when."""

    department = models.ForeignKey(
        Department, on_delete=models.PROTECT, related_name="grants", verbose_name=_("department")
    )
    fields = ArrayField(models.CharField(max_length=20, choices=PiiField.choices), verbose_name=_("fields"))
    purpose = models.CharField(max_length=200, verbose_name=_("purpose"))
    valid_from = models.DateField(verbose_name=_("valid from"))
    valid_to = models.DateField(null=True, blank=True, verbose_name=_("valid to"))
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("revoked at"))
    granted_by = models.CharField(max_length=150, verbose_name=_("granted by"))
    granted_at = models.DateTimeField(auto_now_add=True, verbose_name=_("granted at"))

    class Meta:
        verbose_name = _("data grant")
        verbose_name_plural = _("data grants")
        ordering = ["department_id", "-valid_from"]


class DataRead(models.Model):
    """One read of a cardholder's data through a grant: who, which department, whom, which fields, why."""

    grant = models.ForeignKey(
        DataGrant, on_delete=models.PROTECT, related_name="reads", verbose_name=_("grant")
    )
    department = models.ForeignKey(
        Department, on_delete=models.PROTECT, related_name="reads", verbose_name=_("department")
    )
    cardholder_id = models.BigIntegerField(verbose_name=_("cardholder id"))
    reader = models.CharField(max_length=150, verbose_name=_("reader"))
    fields = ArrayField(models.CharField(max_length=20), verbose_name=_("fields"))
    reason = models.CharField(max_length=200, verbose_name=_("reason"))
    at = models.DateTimeField(verbose_name=_("at"))

    class Meta:
        verbose_name = _("data read")
        verbose_name_plural = _("data reads")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["cardholder_id", "at"], name="dataread_holder_at")]


class Onboarding(Department):
    """The onboarding checklist's admin page (入驻清单): a proxy with no table of its own, so the page has a
    place and a permission on the tenant's admin site (selectors.onboarding_overview fills it)."""

    class Meta:
        proxy = True
        verbose_name = _("onboarding checklist")
        verbose_name_plural = _("onboarding checklist")

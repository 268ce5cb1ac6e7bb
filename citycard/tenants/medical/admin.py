"""Tenant admin of medical roaming (异地就医) for city administrators: the catalogue (with CSV import and
export), policies per insured category and year, claims with their per-line adjudication (read only),
each insured person's year to date, and closing a year. Forms show money in yuan and ratios in percent;
every change goes through the services in fen and basis points, which write the audit entries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import tenant_admin
from citycard.platform.errors import DomainError
from citycard.platform.reasons import reason_text
from citycard.tenants.medical import selectors, services
from citycard.tenants.medical.models import (
    CatalogueItem,
    Claim,
    ClosedYear,
    Coverage,
    InsuredCategory,
    InsuredYear,
    ItemCategory,
    Policy,
)
from citycard.tenants.medical.selectors import percent
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.money import yuan


def _actor(request) -> str:
    return f"user:{request.user.username}"


def _this_year() -> int:
    return timezone.now().astimezone(BEIJING).year


class YuanField(forms.DecimalField):
    """An amount typed in yuan with at most two decimals; ``fen()`` gives the integer fen."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 2)
        kwargs.setdefault("min_value", Decimal("0"))
        super().__init__(**kwargs)

    @staticmethod
    def fen(value: Decimal | None) -> int | None:
        return None if value is None else int(value * 100)

    @staticmethod
    def of(fen: int | None) -> Decimal | None:
        return None if fen is None else Decimal(fen) / 100


class PercentField(forms.DecimalField):
    """A share typed in percent (0-100, two decimals); ``bps()`` gives basis points."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 5)
        kwargs.setdefault("decimal_places", 2)
        kwargs.setdefault("min_value", Decimal("0"))
        kwargs.setdefault("max_value", Decimal("100"))
        super().__init__(**kwargs)

    @staticmethod
    def bps(value: Decimal | None) -> int | None:
        return None if value is None else int(value * 100)

    @staticmethod
    def of(bps: int | None) -> Decimal | None:
        return None if bps is None else Decimal(bps) / 100


def _service_error(form: forms.Form, exc: DomainError, fields: dict[str, str]) -> None:
    """A service's refusal on the form: on the field it names (as the form calls it), else on top."""
    field = fields.get(exc.field or "", exc.field)
    form.add_error(field if field in form.fields else None, exc.message)


# --- catalogue ----------------------------------------------------------------------------------------


class CatalogueItemForm(forms.ModelForm):
    unit_price = YuanField(label=_("unit price (yuan)"))
    self_pay = PercentField(
        label=_("self-pay share (%)"),
        required=False,
        help_text=_("Class B only: what the patient pays first."),
    )
    FIELDS = {"unit_price_fen": "unit_price", "self_pay_bps": "self_pay"}

    class Meta:
        model = CatalogueItem
        fields = ("code", "name", "category", "coverage", "active")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["code"].disabled = True
            self.initial["unit_price"] = YuanField.of(self.instance.unit_price_fen)
            self.initial["self_pay"] = PercentField.of(self.instance.self_pay_bps)

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        data["unit_price_fen"] = YuanField.fen(data["unit_price"])
        data["self_pay_bps"] = PercentField.bps(data.get("self_pay")) or 0
        try:
            services.catalogue_item_check(
                code=data["code"],
                name=data["name"],
                category=data["category"],
                unit_price_fen=data["unit_price_fen"],
                coverage=data["coverage"],
                self_pay_bps=data["self_pay_bps"],
            )
        except DomainError as exc:
            _service_error(self, exc, self.FIELDS)
        return data

    def validate_unique(self):
        """An existing code is changed, not refused: the service saves by code."""


class CatalogueImportForm(forms.Form):
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_(
            "UTF-8, header code,name,category,unit_price_fen,class[,self_pay_bps][,active]; class A/B/C or "
            "甲/乙/丙; prices in fen, the self-pay share in basis points."
        ),
    )


@admin.register(CatalogueItem, site=tenant_admin)
class CatalogueItemAdmin(admin.ModelAdmin):
    form = CatalogueItemForm
    change_list_template = "admin/medical/catalogue_change_list.html"
    list_display = ("code", "name", "category", "coverage", "price", "self_pay", "active")
    list_filter = ("category", "coverage", "active")
    search_fields = ("code", "name")
    fields = ("code", "name", "category", "coverage", "unit_price", "self_pay", "active")

    @admin.display(description=_("unit price"), ordering="unit_price_fen")
    def price(self, obj):
        return yuan(obj.unit_price_fen)

    @admin.display(description=_("self-pay share"))
    def self_pay(self, obj):
        return percent(obj.self_pay_bps) if obj.coverage == Coverage.B else ""

    def has_delete_permission(self, request, obj=None):
        return False  # claims name items by code: withdraw an item instead

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved = services.catalogue_item_save(
            code=obj.code if change else data["code"],
            name=data["name"],
            category=data["category"],
            unit_price_fen=data["unit_price_fen"],
            coverage=data["coverage"],
            self_pay_bps=data["self_pay_bps"],
            active=data["active"],
            actor=_actor(request),
        )
        obj.pk = saved.pk

    def get_urls(self):
        return [
            path(
                "import/", self.admin_site.admin_view(self.import_view), name="medical_catalogueitem_import"
            ),
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_view),
                name="medical_catalogueitem_export",
            ),
            *super().get_urls(),
        ]

    def import_view(self, request):
        """Add or change items from a CSV file; bad rows are listed by line, the good ones applied."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        report, error = None, None
        form = CatalogueImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                text = upload.read().decode("utf-8-sig")
                report = services.catalogue_import(text=text, source=upload.name, actor=_actor(request))
            except UnicodeDecodeError:
                error = _("The file is not UTF-8 text: save it as CSV UTF-8 and try again.")
            except DomainError as exc:
                error = exc.message
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Import catalogue items from CSV"),
            "form": form,
            "report": report,
            "error": error,
        }
        return TemplateResponse(request, "admin/medical/catalogue_import.html", context)

    def export_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        response = HttpResponse(
            selectors.catalogue_csv(selectors.catalogue_items()), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = 'attachment; filename="catalogue.csv"'
        return response


# --- policies -----------------------------------------------------------------------------------------


class PolicyForm(forms.ModelForm):
    effective_from = forms.DateField(
        label=_("in force from"), required=False, help_text=_("Default: 1 January.")
    )
    effective_to = forms.DateField(
        label=_("in force until"), required=False, help_text=_("Last day, inclusive. Default: 31 December.")
    )
    deductible = YuanField(label=_("deductible (yuan)"))
    annual_cap = YuanField(label=_("annual cap (yuan)"))
    FIELDS = {"deductible_fen": "deductible", "annual_cap_fen": "annual_cap", "ratios_bps": "ratio_drug"}

    class Meta:
        model = Policy
        fields = ("category", "year")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        policy = self.instance
        if policy.pk:
            self.initial.update(
                effective_from=policy.effective_from,
                effective_to=policy.effective_to,
                deductible=YuanField.of(policy.deductible_fen),
                annual_cap=YuanField.of(policy.annual_cap_fen),
                **{f"ratio_{k}": PercentField.of(v) for k, v in policy.ratios_bps.items()},
            )
        else:
            self.initial.setdefault("year", _this_year())

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        year = data["year"]
        data["effective_from"] = data.get("effective_from") or dt.date(year, 1, 1)
        data["effective_to"] = data.get("effective_to") or dt.date(year, 12, 31)
        data["deductible_fen"] = YuanField.fen(data["deductible"])
        data["annual_cap_fen"] = YuanField.fen(data["annual_cap"])
        data["ratios_bps"] = {
            value: PercentField.bps(data[f"ratio_{value}"])
            for value in ItemCategory.values
            if data.get(f"ratio_{value}") is not None
        }
        try:
            services.policy_check(
                policy_id=self.instance.pk,
                category=data["category"],
                year=year,
                effective_from=data["effective_from"],
                effective_to=data["effective_to"],
                deductible_fen=data["deductible_fen"],
                ratios_bps=data["ratios_bps"],
                annual_cap_fen=data["annual_cap_fen"],
            )
        except DomainError as exc:
            _service_error(self, exc, self.FIELDS)
        return data


# One ratio field per item category (declared on the class, so the admin's form factory keeps them).
for _value, _label in ItemCategory.choices:
    PolicyForm.base_fields[f"ratio_{_value}"] = PolicyForm.declared_fields[f"ratio_{_value}"] = PercentField(
        label=format_lazy(_("reimbursement ratio {category} (%)"), category=_label),
        required=False,
        help_text=_("Empty: not reimbursed."),
    )


@admin.register(Policy, site=tenant_admin)
class PolicyAdmin(admin.ModelAdmin):
    form = PolicyForm
    list_display = ("category", "year", "period", "deductible", "ratios", "annual_cap", "claims")
    list_filter = ("year", "category")

    def get_fields(self, request, obj=None):
        return [
            "category",
            "year",
            "effective_from",
            "effective_to",
            "deductible",
            *[f"ratio_{value}" for value in ItemCategory.values],
            "annual_cap",
        ]

    def get_queryset(self, request):
        return selectors.policies()

    @admin.display(description=_("in force"))
    def period(self, obj):
        return f"{obj.effective_from} – {obj.effective_to}"

    @admin.display(description=_("deductible"), ordering="deductible_fen")
    def deductible(self, obj):
        return yuan(obj.deductible_fen)

    @admin.display(description=_("reimbursement ratio"))
    def ratios(self, obj):
        labels = dict(ItemCategory.choices)
        return "; ".join(f"{labels.get(k, k)} {percent(v)}" for k, v in sorted(obj.ratios_bps.items()))

    @admin.display(description=_("annual cap"), ordering="annual_cap_fen")
    def annual_cap(self, obj):
        return yuan(obj.annual_cap_fen)

    @admin.display(description=_("claims adjudicated"), ordering="claim_count")
    def claims(self, obj):
        return obj.claim_count

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved = services.policy_set(
            policy_id=obj.pk if change else None,
            category=data["category"],
            year=data["year"],
            effective_from=data["effective_from"],
            effective_to=data["effective_to"],
            deductible_fen=data["deductible_fen"],
            ratios_bps=data["ratios_bps"],
            annual_cap_fen=data["annual_cap_fen"],
            actor=_actor(request),
        )
        obj.pk = saved.pk


# --- claims (read only) -------------------------------------------------------------------------------

STATUS_LABELS = {
    selectors.ClaimStatus.SUBMITTED: _("submitted, awaiting the insured place"),
    selectors.ClaimStatus.ADJUDICATED: _("adjudicated"),
    selectors.ClaimStatus.REFUSED: _("refused"),
}
OUTCOME_LABELS = {
    services.LineOutcome.COVERED: _("Class A: covered"),
    services.LineOutcome.PARTLY_COVERED: _("Class B: covered after the self-pay share"),
    services.LineOutcome.SELF_PAY: _("Class C: self-pay"),
    services.LineOutcome.NOT_IN_CATALOGUE: _("outside the catalogue: self-pay"),
}


class StatusFilter(admin.SimpleListFilter):
    title = _("outcome")
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("refused", _("refused as a whole")), ("reimbursed", _("fund share paid"))]

    def queryset(self, request, queryset):
        if self.value() == "refused":
            return queryset.exclude(refusal="") | queryset.filter(outcome__has_key="rejected")
        if self.value() == "reimbursed":
            return queryset.filter(fund_fen__gt=0) | queryset.filter(outcome__fund_fen__gt=0)
        return queryset


@admin.register(Claim, site=tenant_admin)
class ClaimAdmin(admin.ModelAdmin):
    """Claims our hospitals submitted (treatment place) and claims of our insured persons we adjudicated
    (insured place), each with its lines and how they were adjudicated. Read only."""

    list_display = (
        "claim_id",
        "role",
        "treated",
        "card_no",
        "department",
        "total",
        "fund",
        "patient",
        "status",
    )
    list_filter = ("role", StatusFilter, "insured_category")
    search_fields = ("=card_no", "claim_id", "hospital_claim_no")
    search_help_text = _("Card number (exact), claim id or the hospital's claim id.")
    date_hierarchy = "treated_at"
    fields = (
        "claim_id",
        "role",
        "hospital_claim_no",
        "card_no",
        "department",
        "treated",
        "submitted",
        "status",
        "reason",
        "total",
        "fund",
        "patient",
        "insured_category",
        "policy",
        "lines",
        "adjudication",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return selectors.claims()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("treated (Beijing time)"), ordering="treated_at")
    def treated(self, obj):
        return obj.treated_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")

    @admin.display(description=_("submitted"))
    def submitted(self, obj):
        if obj.submitted_at is None:
            return ""
        return f"{obj.submitted_at.astimezone(BEIJING):%Y-%m-%d %H:%M} · {obj.submitted_by}"

    @admin.display(description=_("total"), ordering="total_fen")
    def total(self, obj):
        return yuan(obj.total_fen)

    @admin.display(description=_("fund share"))
    def fund(self, obj):
        return yuan(selectors.claim_result(obj).fund_fen)

    @admin.display(description=_("patient pays"))
    def patient(self, obj):
        return yuan(selectors.claim_result(obj).patient_fen)

    @admin.display(description=_("status"))
    def status(self, obj):
        result = selectors.claim_result(obj)
        label = STATUS_LABELS[result.status]
        return f"{label}: {reason_text(result.refusal)}" if result.refusal else label

    @admin.display(description=_("reason"))
    def reason(self, obj):
        return selectors.claim_result(obj).reason

    @admin.display(description=_("lines"))
    def lines(self, obj):
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td></tr>",
            (
                (
                    line["code"],
                    line.get("name", ""),
                    line.get("category", ""),
                    line.get("coverage", ""),
                    line["quantity"],
                    yuan(line.get("unit_price_fen")),
                    yuan(line["amount_fen"]),
                    yuan(line["eligible_fen"]),
                    OUTCOME_LABELS.get(line.get("outcome", ""), line.get("outcome", "")),
                )
                for line in obj.items
            ),
        )
        return format_html(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>"
            "<th>{}</th></tr>{}</table>",
            _("code"),
            _("item"),
            _("category"),
            _("class"),
            _("qty"),
            _("unit price"),
            _("amount"),
            _("eligible"),
            _("outcome"),
            rows,
        )

    @admin.display(description=_("adjudication per category"))
    def adjudication(self, obj):
        detail = selectors.claim_result(obj).detail
        categories = detail.get("categories", {})
        if not categories:
            return ""
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    name,
                    yuan(c["eligible_fen"]),
                    yuan(c["deductible_fen"]),
                    percent(c["ratio_bps"]),
                    yuan(c["fund_fen"]),
                )
                for name, c in sorted(categories.items())
            ),
        )
        return format_html(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{}</table><p>{}</p>",
            _("category"),
            _("eligible"),
            _("deductible taken"),
            _("reimbursement ratio"),
            _("fund share"),
            rows,
            _("Before the annual cap: %(before)s; what the annual cap left: %(left)s.")
            % {"before": yuan(detail.get("before_cap_fen")), "left": yuan(detail.get("cap_left_fen"))},
        )


# --- insured persons' years ---------------------------------------------------------------------------


class InsuredYearForm(forms.ModelForm):
    class Meta:
        model = InsuredYear
        fields = ("card_no", "year", "category")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["card_no"].disabled = True
            self.fields["year"].disabled = True
        else:
            self.initial.setdefault("year", _this_year())

    def validate_unique(self):
        """Setting the category of a year that has a row changes it: the service finds the row."""

    def clean(self):
        data = super().clean()
        if not self.errors:
            try:
                services.insured_year_check(
                    card_no=data["card_no"], year=data["year"], category=data["category"]
                )
            except DomainError as exc:
                _service_error(self, exc, {})
        return data


@admin.register(InsuredYear, site=tenant_admin)
class InsuredYearAdmin(admin.ModelAdmin):
    """Each insured person's year to date (年度累计): their insured category (changeable), what of the
    起付线 and 封顶线 is used and left, their claims."""

    form = InsuredYearForm
    list_display = ("card_no", "year", "category", "deductible_used", "fund_paid", "cap_left", "claims")
    list_filter = ("year", "category")
    search_fields = ("=card_no",)
    search_help_text = _("Card number (exact).")

    def get_queryset(self, request):
        return selectors.insured_years()

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["card_no", "year", "category"]
        return ["card_no", "year", "category", "year_to_date"]

    def get_readonly_fields(self, request, obj=None):
        return ["year_to_date"] if obj else []

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("deductible used / of"))
    def deductible_used(self, obj):
        of = f" / {yuan(obj.deductible_fen)}" if obj.deductible_fen is not None else ""
        return f"{yuan(obj.deductible_used_fen)}{of}"

    @admin.display(description=_("fund paid / annual cap"))
    def fund_paid(self, obj):
        of = f" / {yuan(obj.annual_cap_fen)}" if obj.annual_cap_fen is not None else ""
        return f"{yuan(obj.fund_paid_fen)}{of}"

    @admin.display(description=_("cap left"))
    def cap_left(self, obj):
        if obj.annual_cap_fen is None:
            return _("no policy")
        return yuan(max(0, obj.annual_cap_fen - obj.fund_paid_fen))

    @admin.display(description=_("claims"), ordering="claim_count")
    def claims(self, obj):
        if not obj.claim_count:
            return 0
        url = reverse("tenant_admin:medical_claim_changelist")
        return format_html('<a href="{}?q={}">{}</a>', url, obj.card_no, obj.claim_count)

    @admin.display(description=_("year to date"))
    def year_to_date(self, obj):
        use = selectors.insured_year_use(card_no=obj.card_no, year=obj.year)
        if use.policy is None:
            return _("No %(category)s policy in force: claims are refused (no_policy).") % {
                "category": InsuredCategory(use.category).label
            }
        deductible = {
            "of": yuan(use.policy.deductible_fen),
            "used": yuan(use.deductible_used_fen),
            "left": yuan(use.deductible_left_fen),
        }
        cap = {
            "of": yuan(use.policy.annual_cap_fen),
            "paid": yuan(use.fund_paid_fen),
            "left": yuan(use.cap_left_fen),
        }
        claims = {
            "n": use.claims,
            "refused": use.refused,
            "period": f"{use.policy.effective_from} – {use.policy.effective_to}",
        }
        return format_html(
            "{}<br>{}<br>{}",
            _("Deductible %(of)s: %(used)s used, %(left)s left") % deductible,
            _("Annual cap %(of)s: %(paid)s paid by the fund, %(left)s left") % cap,
            _("%(n)s claims, %(refused)s refused; under the policy in force %(period)s") % claims,
        )

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved = services.insured_year_set_category(
            card_no=obj.card_no if change else data["card_no"],
            year=obj.year if change else data["year"],
            category=data["category"],
            actor=_actor(request),
        )
        obj.pk = saved.pk


# --- closed years -------------------------------------------------------------------------------------


class ClosedYearForm(forms.ModelForm):
    class Meta:
        model = ClosedYear
        fields = ("year",)
        help_texts = {"year": _("Claims treated in a closed year are refused as a whole (year_closed).")}

    def clean_year(self):
        year = self.cleaned_data["year"]
        if year >= _this_year():
            raise forms.ValidationError(
                _("%(year)s has not ended yet: close a year after 31 December.") % {"year": year}
            )
        return year


@admin.register(ClosedYear, site=tenant_admin)
class ClosedYearAdmin(admin.ModelAdmin):
    form = ClosedYearForm
    list_display = ("year", "closed_at", "closed_by")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # closed years never reopen

    def save_model(self, request, obj, form, change):
        saved = services.medical_year_close(year=form.cleaned_data["year"], actor=_actor(request))
        obj.pk = saved.pk

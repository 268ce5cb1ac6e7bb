"""City admin pages for the fare rules, the publish page and the fare simulator (票价模拟)."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from citycard.platform.admin_sites import tenant_admin
from citycard.platform.errors import DomainError
from citycard.tenants.fares import selectors, services
from citycard.tenants.fares.models import (
    CATEGORY_CHOICES,
    MEDIA_CHOICES,
    SERVICE_CHOICES,
    Cap,
    FareProduct,
    LegRule,
    Quota,
    RouteSet,
    Timeframe,
    TimeframeWindow,
    TransferRule,
    VisitorPolicy,
)

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


@admin.register(RouteSet, site=tenant_admin)
class RouteSetAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "service", "ranges", "routes", "excluded")
    search_fields = ("code", "name")


class TimeframeWindowInline(admin.TabularInline):
    model = TimeframeWindow
    extra = 1


@admin.register(Timeframe, site=tenant_admin)
class TimeframeAdmin(admin.ModelAdmin):
    list_display = ("code", "name")
    inlines = [TimeframeWindowInline]


@admin.register(Quota, site=tenant_admin)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "period", "rides")


@admin.register(FareProduct, site=tenant_admin)
class FareProductAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "service",
        "route_set",
        "amount_fen",
        "priority",
        "valid_from",
        "valid_to",
    )
    list_filter = ("service",)


@admin.register(LegRule, site=tenant_admin)
class LegRuleAdmin(admin.ModelAdmin):
    """The discount rules, with the publish page and the simulator linked from the list."""

    list_display = (
        "code",
        "name",
        "priority",
        "service",
        "route_set",
        "timeframe",
        "categories",
        "media",
        "passes",
        "riders",
        "kind",
        "value",
        "quota",
        "valid_from",
        "valid_to",
    )
    list_filter = ("service", "kind", "riders")
    search_fields = ("code", "name")
    change_list_template = "fares/legrule_changelist.html"

    def get_urls(self):
        own = [
            path("simulator/", self.admin_site.admin_view(self.simulator_view), name="fares_simulator"),
            path("publish/", self.admin_site.admin_view(self.publish_view), name="fares_publish"),
        ]
        return own + super().get_urls()

    def simulator_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        tenant = connection.tenant
        form = SimulatorForm(request.GET or None)
        result, error = None, None
        if form.is_valid():
            data = form.cleaned_data
            try:
                result = selectors.fares_quote(
                    tenant=tenant,
                    service=data["service"],
                    route=data["route"],
                    at=data["at"].replace(tzinfo=SHANGHAI) if data["at"].tzinfo is None else data["at"],
                    categories=data["categories"],
                    scheme=data["scheme"],
                    issuer=data["issuer"] or None,
                    passes=["monthly"] if data["monthly_pass"] else [],
                    draft=data["draft"],
                )
            except DomainError as exc:
                error = str(exc)
        context = {
            **self.admin_site.each_context(request),
            "title": "Fare simulator",
            "form": form,
            "result": result,
            "error": error,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "fares/simulator.html", context)

    def publish_view(self, request):
        if not self.has_change_permission(request):
            raise PermissionDenied
        tenant = connection.tenant
        problems = selectors.fares_validate(tenant=tenant) if tenant.kind == "city" else []
        if request.method == "POST":
            try:
                publication = services.fares_publish(tenant=tenant, actor=f"user:{request.user.username}")
            except DomainError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"published fare_rules v{publication.version}")
            return redirect(reverse(f"{self.admin_site.name}:fares_legrule_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Publish the fare rules",
            "problems": problems,
            "county": tenant.kind == "county",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "fares/publish.html", context)


@admin.register(TransferRule, site=tenant_admin)
class TransferRuleAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "from_service",
        "from_route_set",
        "to_service",
        "to_route_set",
        "within_minutes",
        "max_transfers",
        "transfer_type",
        "amount_fen",
        "priority",
    )


@admin.register(Cap, site=tenant_admin)
class CapAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "period", "amount_fen", "service", "categories", "media")


@admin.register(VisitorPolicy, site=tenant_admin)
class VisitorPolicyAdmin(admin.ModelAdmin):
    list_display = ("scope", "key", "policy")


class SimulatorForm(forms.Form):
    service = forms.ChoiceField(choices=SERVICE_CHOICES, initial="bus")
    route = forms.CharField(max_length=40)
    at = forms.DateTimeField(help_text="Local time (Asia/Shanghai), e.g. 2026-11-23 08:10")
    categories = forms.MultipleChoiceField(
        choices=CATEGORY_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
    )
    scheme = forms.ChoiceField(choices=MEDIA_CHOICES, initial="01", label="card scheme")
    issuer = forms.CharField(
        max_length=6,
        required=False,
        help_text="Issuer division code of a visitor's card (blank: a local card)",
    )
    monthly_pass = forms.BooleanField(required=False)
    draft = forms.BooleanField(
        required=False, help_text="Use the unpublished rules (preview before publishing)"
    )

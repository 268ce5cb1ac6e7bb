"""City admin pages for the fare rules, the publish page and the fare simulator (票价模拟)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import connection, models, transaction
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import ServiceFormAdmin, tenant_admin
from citycard.platform.errors import DomainError
from citycard.tenants.fares import selectors, services
from citycard.tenants.fares.models import (
    CATEGORY_CHOICES,
    MEDIA_CHOICES,
    SERVICE_CHOICES,
    Area,
    Cap,
    FareProduct,
    FareTable,
    GateRule,
    LegRule,
    Line,
    Quota,
    RouteSet,
    Stop,
    Timeframe,
    TimeframeWindow,
    TransferRule,
    VisitorPolicy,
)
from citycard.terminal_kit.beijing import BEIJING


def _actor(request) -> str:
    return f"user:{request.user.username}"


def _values(form) -> dict:
    """The form's cleaned fields as the services take them: referenced rows by code."""
    fields = {f.name for f in form._meta.model._meta.concrete_fields}
    return {
        name: (value.code if isinstance(value, models.Model) else value)
        for name, value in form.cleaned_data.items()
        if name in fields
    }


class RuleAdmin(ServiceFormAdmin):
    """Saves and deletes through the fare services (checked, audited, refused for a county).

    The form runs the same model checks the services run, so bad input comes back as form errors; a
    refusal only the service can make (a row still in use, a county) comes back as a message, with
    nothing written."""

    create_service = None
    change_service = None
    delete_service = None

    def _key(self, obj) -> dict:
        return {"code": obj.code}

    def _original_key(self, form) -> dict:
        return {"code": form.initial.get("code", form.instance.code)}

    def save_model(self, request, obj, form, change):
        tenant = connection.tenant
        if change:
            saved = self.change_service(
                tenant=tenant, actor=_actor(request), **self._original_key(form), changes=_values(form)
            )
        else:
            saved = self.create_service(tenant=tenant, actor=_actor(request), fields=_values(form))
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        self.delete_service(tenant=connection.tenant, actor=_actor(request), **self._key(obj))

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)

    def _refused(self, request, exc: DomainError):
        self.message_user(request, str(exc), level=messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:  # the view's transaction is rolled back: nothing written
            return self._refused(request, exc)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except DomainError as exc:
            return self._refused(request, exc)

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except DomainError as exc:  # the delete action
            return self._refused(request, exc)


@admin.register(RouteSet, site=tenant_admin)
class RouteSetAdmin(RuleAdmin):
    create_service = staticmethod(services.route_set_create)
    change_service = staticmethod(services.route_set_change)
    delete_service = staticmethod(services.route_set_delete)
    list_display = ("code", "name", "service", "ranges", "routes", "excluded")
    search_fields = ("code", "name")


class TimeframeWindowInline(admin.TabularInline):
    model = TimeframeWindow
    extra = 1


@admin.register(Timeframe, site=tenant_admin)
class TimeframeAdmin(RuleAdmin):
    create_service = staticmethod(services.timeframe_create)
    change_service = staticmethod(services.timeframe_change)
    delete_service = staticmethod(services.timeframe_delete)
    list_display = ("code", "name")
    inlines = [TimeframeWindowInline]

    def save_model(self, request, obj, form, change):
        """Saved with its windows in ``save_related``, where the inline's rows are known."""

    def save_related(self, request, form, formsets, change):
        windows = [
            {"days": f.cleaned_data["days"], "start": f.cleaned_data["start"], "end": f.cleaned_data["end"]}
            for formset in formsets
            for f in formset.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]
        tenant, actor = connection.tenant, _actor(request)
        if change:
            saved = services.timeframe_change(
                tenant=tenant, actor=actor, **self._original_key(form), changes=_values(form), windows=windows
            )
        else:
            saved = services.timeframe_create(
                tenant=tenant, actor=actor, fields=_values(form), windows=windows
            )
        form.instance.pk = saved.pk
        for formset in formsets:  # what the change message reads; the service saved the rows
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []


@admin.register(Quota, site=tenant_admin)
class QuotaAdmin(RuleAdmin):
    create_service = staticmethod(services.quota_create)
    change_service = staticmethod(services.quota_change)
    delete_service = staticmethod(services.quota_delete)
    list_display = ("code", "name", "period", "rides")


@admin.register(FareProduct, site=tenant_admin)
class FareProductAdmin(RuleAdmin):
    create_service = staticmethod(services.fare_product_create)
    change_service = staticmethod(services.fare_product_change)
    delete_service = staticmethod(services.fare_product_delete)
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
class LegRuleAdmin(RuleAdmin):
    """The discount rules, with the publish page and the simulator linked from the list."""

    create_service = staticmethod(services.leg_rule_create)
    change_service = staticmethod(services.leg_rule_change)
    delete_service = staticmethod(services.leg_rule_delete)

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
                    at=data["at"].replace(tzinfo=BEIJING) if data["at"].tzinfo is None else data["at"],
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
            "title": _("Fare simulator"),
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
                messages.success(
                    request, _("published fare_rules v%(version)s") % {"version": publication.version}
                )
            return redirect(reverse(f"{self.admin_site.name}:fares_legrule_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Publish the fare rules"),
            "problems": problems,
            "county": tenant.kind == "county",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "fares/publish.html", context)


@admin.register(TransferRule, site=tenant_admin)
class TransferRuleAdmin(RuleAdmin):
    create_service = staticmethod(services.transfer_rule_create)
    change_service = staticmethod(services.transfer_rule_change)
    delete_service = staticmethod(services.transfer_rule_delete)
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
class CapAdmin(RuleAdmin):
    create_service = staticmethod(services.cap_create)
    change_service = staticmethod(services.cap_change)
    delete_service = staticmethod(services.cap_delete)
    list_display = ("code", "name", "period", "amount_fen", "service", "categories", "media")


@admin.register(VisitorPolicy, site=tenant_admin)
class VisitorPolicyAdmin(RuleAdmin):
    create_service = staticmethod(services.visitor_policy_create)
    change_service = staticmethod(services.visitor_policy_change)
    delete_service = staticmethod(services.visitor_policy_delete)
    list_display = ("scope", "key", "policy")

    def _key(self, obj) -> dict:
        return {"scope": obj.scope, "key": obj.key}

    def _original_key(self, form) -> dict:
        return {"scope": form.initial.get("scope", ""), "key": form.initial.get("key", "")}


# --- the metro's rows: stations, areas, lines, fare tables, gate rules (进出站计费) -----------------------


@admin.register(Stop, site=tenant_admin)
class StopAdmin(RuleAdmin):
    create_service = staticmethod(services.stop_create)
    change_service = staticmethod(services.stop_change)
    delete_service = staticmethod(services.stop_delete)
    list_display = ("code", "name", "lat", "lon")
    search_fields = ("code", "name")


@admin.register(Area, site=tenant_admin)
class AreaAdmin(RuleAdmin):
    create_service = staticmethod(services.area_create)
    change_service = staticmethod(services.area_change)
    delete_service = staticmethod(services.area_delete)
    list_display = ("code", "name", "stops")
    search_fields = ("code", "name")


@admin.register(Line, site=tenant_admin)
class LineAdmin(RuleAdmin):
    create_service = staticmethod(services.line_create)
    change_service = staticmethod(services.line_change)
    delete_service = staticmethod(services.line_delete)
    list_display = ("code", "name", "service", "stops")
    list_filter = ("service",)
    search_fields = ("code", "name")


@admin.register(FareTable, site=tenant_admin)
class FareTableAdmin(RuleAdmin):
    """A fare table's rows as JSON (``[[up to, fen], ...]``, or ``[[from, to, fen], ...]`` station to
    station); a whole table comes in faster from a CSV: ``citycard fares fare-table import``."""

    create_service = staticmethod(services.fare_table_create)
    change_service = staticmethod(services.fare_table_change)
    delete_service = staticmethod(services.fare_table_delete)
    list_display = ("code", "name", "measure", "beyond_every", "beyond_add_fen")
    list_filter = ("measure",)


@admin.register(GateRule, site=tenant_admin)
class GateRuleAdmin(RuleAdmin):
    create_service = None  # gate_rule_set creates or changes by service
    change_service = None
    delete_service = staticmethod(services.gate_rule_delete)
    list_display = (
        "service",
        "entry_fen",
        "time_limit_minutes",
        "incomplete_fen",
        "no_entry_fen",
        "same_station_minutes",
        "same_station_fen",
    )

    def _key(self, obj) -> dict:
        return {"service": obj.service}

    def save_model(self, request, obj, form, change):
        values = _values(form)
        service = form.initial.get("service", values["service"]) if change else values["service"]
        saved = services.gate_rule_set(
            tenant=connection.tenant, actor=_actor(request), service=service, changes=values
        )
        obj.pk = saved.pk


class SimulatorForm(forms.Form):
    service = forms.ChoiceField(choices=SERVICE_CHOICES, initial="bus", label=_("service"))
    route = forms.CharField(max_length=255, label=_("route"))
    at = forms.DateTimeField(help_text=_("Local time (Asia/Shanghai), e.g. 2026-11-23 08:10"), label=_("at"))
    categories = forms.MultipleChoiceField(
        choices=CATEGORY_CHOICES, required=False, widget=forms.CheckboxSelectMultiple, label=_("categories")
    )
    scheme = forms.ChoiceField(choices=MEDIA_CHOICES, initial="01", label=_("card scheme"))
    issuer = forms.CharField(
        max_length=6,
        required=False,
        help_text=_("Issuer division code of a visitor's card (blank: a local card)"),
        label=_("issuer"),
    )
    monthly_pass = forms.BooleanField(required=False, label=_("monthly pass"))
    draft = forms.BooleanField(
        required=False, help_text=_("Use the unpublished rules (preview before publishing)"), label=_("draft")
    )

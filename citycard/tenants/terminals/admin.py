"""Tenant admin pages: the terminal registry, batches, transactions, metro journeys, review flags and exceptions."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import ReadOnlyAdmin, reason_column, reason_filter, tenant_admin
from citycard.platform.errors import DomainError
from citycard.tenants.terminals import services
from citycard.tenants.terminals.models import (
    Batch,
    Journey,
    ReviewFlag,
    TapException,
    Terminal,
    TerminalKey,
    Transaction,
)
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.money import yuan


def _actor(request) -> str:
    return f"user:{request.user.username}"


class TerminalKeyInline(admin.TabularInline):
    model = TerminalKey
    extra = 0
    fields = ("key_id", "version", "created_at", "retired_at", "verify_until")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class TerminalRegistrationForm(forms.ModelForm):
    """Registering goes through services.terminal_register (key stored, audit written)."""

    public_key = forms.CharField(
        help_text=_("The terminal's Ed25519 public key, base64 or hex (32 bytes)."), label=_("public key")
    )

    class Meta:
        model = Terminal
        fields = ("terminal_id", "operator", "department", "service", "route", "location")


@admin.register(Terminal, site=tenant_admin)
class TerminalAdmin(admin.ModelAdmin):
    list_display = (
        "terminal_id",
        "operator",
        "department",
        "service",
        "route",
        "location",
        "status",
        "last_seq",
    )
    list_filter = ("status", "service", "department")
    search_fields = ("terminal_id", "operator", "route", "location")
    inlines = [TerminalKeyInline]
    actions = ["suspend_selected", "resume_selected"]
    readonly_fields = ("status", "status_reason", "last_seq", "registered_at", "registered_by")

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = TerminalRegistrationForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["terminal_id", "operator", "department", "service", "route", "location", "public_key"]
        return [
            "terminal_id",
            "operator",
            "department",
            "service",
            "route",
            "location",
            *self.readonly_fields,
        ]

    def get_readonly_fields(self, request, obj=None):
        return ("terminal_id", *self.readonly_fields) if obj else ()

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        data = form.cleaned_data
        try:
            created = services.terminal_register(
                terminal_id=data["terminal_id"],
                operator=data["operator"],
                department=data["department"],
                service=data["service"],
                route=data.get("route", ""),
                location=data.get("location", ""),
                public_key=data["public_key"],
                actor=_actor(request),
            )
        except DomainError as exc:
            messages.error(request, str(exc))
            raise
        obj.pk = created.pk

    @admin.action(description=_("Suspend the selected terminals (uploads refused)"))
    def suspend_selected(self, request, queryset):
        for terminal in queryset:
            services.terminal_suspend(
                terminal_id=terminal.terminal_id,
                reason=f"suspended by {request.user.username}",
                actor=_actor(request),
            )
        messages.success(request, _("suspended %(n)d terminal(s)") % {"n": queryset.count()})

    @admin.action(description=_("Resume the selected terminals"))
    def resume_selected(self, request, queryset):
        for terminal in queryset:
            services.terminal_resume(terminal_id=terminal.terminal_id, actor=_actor(request))
        messages.success(request, _("resumed %(n)d terminal(s)") % {"n": queryset.count()})


@admin.register(Batch, site=tenant_admin)
class BatchAdmin(ReadOnlyAdmin):
    list_display = (
        "batch_id",
        "terminal",
        "received_at",
        "clock_skew_s",
        "tap_count",
        "accepted",
        "duplicates",
        "rejected",
        "verified_at",
    )
    search_fields = ("batch_id", "terminal__terminal_id")
    list_filter = (
        ("verified_at", admin.EmptyFieldListFilter),
    )  # "empty": waiting for the verification stage
    date_hierarchy = "received_at"
    exclude = ("ack_parts",)


@admin.register(Transaction, site=tenant_admin)
class TransactionAdmin(ReadOnlyAdmin):
    list_display = (
        "tapped_at",
        "card_no",
        "card_counter",
        "terminal_id",
        "terminal_seq",
        "amount_fen",
        "routing",
        "issuer_tenant",
        "outbox_state",
    )
    list_filter = ("routing", "outbox_state", "service")
    search_fields = ("=card_no", "=terminal_id")
    show_full_result_count = False


class ResolvableAdmin(ReadOnlyAdmin):
    actions = ["resolve_selected"]

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm(f"terminals.change_{self.model._meta.model_name}")

    @admin.action(description=_("Mark the selected as resolved"))
    def resolve_selected(self, request, queryset):
        n = queryset.filter(resolved_at__isnull=True).update(
            resolved_at=timezone.now(), resolved_by=_actor(request)
        )
        messages.success(request, _("resolved %(n)d") % {"n": n})


@admin.register(ReviewFlag, site=tenant_admin)
class ReviewFlagAdmin(ResolvableAdmin):
    code_shown = reason_column("code", _("code"))
    list_display = ("created_at", "code_shown", "card_no", "transaction_id", "batch", "resolved_at")
    list_filter = (reason_filter("code", _("code")),)
    search_fields = ("=card_no",)


@admin.register(TapException, site=tenant_admin)
class TapExceptionAdmin(ResolvableAdmin):
    reason_shown = reason_column("reason", _("reason"))
    list_display = ("created_at", "kind", "reason_shown", "card_no", "issuer", "batch", "idx", "resolved_at")
    list_filter = ("kind", reason_filter("reason", _("reason")))
    search_fields = ("=card_no",)


def _beijing(at) -> str:
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S") if at else "—"


class HalfReleasedFilter(admin.SimpleListFilter):
    """Half journeys released after their time-out (半程超时释放), or not."""

    title = _("half journey released")
    parameter_name = "released"

    def lookups(self, request, model_admin):
        return [("yes", _("released")), ("no", _("not released"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(released_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(released_at__isnull=True)
        return queryset


@admin.register(Journey, site=tenant_admin)
class JourneyAdmin(ReadOnlyAdmin):
    """Metro journeys (进出站行程) as ingestion paired them, with the half-journey release: when a half was
    settled alone after its time-out and which tap carried its money (docs/clearing.md, "Half journeys")."""

    list_display = (
        "entered",
        "exited",
        "card_no",
        "routing",
        "line",
        "origin",
        "destination",
        "status",
        "fare",
        "released",
        "released_tx_id",
    )
    list_filter = (HalfReleasedFilter, "status", "routing")
    search_fields = ("=card_no",)
    ordering = ("-id",)
    show_full_result_count = False
    fields = (
        "key",
        "card_no",
        "issuer",
        "routing",
        "line",
        "origin",
        "destination",
        "entered",
        "exited",
        "entry_tx_id",
        "exit_tx_id",
        "entry_yuan",
        "exit_yuan",
        "fare",
        "status",
        "released",
        "released_tx_id",
    )
    readonly_fields = fields

    @admin.display(description=_("entered at (Beijing time)"), ordering="entered_at")
    def entered(self, obj):
        return _beijing(obj.entered_at)

    @admin.display(description=_("exited at (Beijing time)"), ordering="exited_at")
    def exited(self, obj):
        return _beijing(obj.exited_at)

    @admin.display(description=_("half released at (Beijing time)"), ordering="released_at")
    def released(self, obj):
        return _beijing(obj.released_at)

    @admin.display(description=_("fare"))
    def fare(self, obj):
        return yuan(obj.fare_fen)

    @admin.display(description=_("charged at entry"))
    def entry_yuan(self, obj):
        return yuan(obj.entry_fen)

    @admin.display(description=_("charged at exit"))
    def exit_yuan(self, obj):
        return yuan(obj.exit_fen)

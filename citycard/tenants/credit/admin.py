"""Tenant admin: the city's credit rules (saved through the service), credit lines (granted by action, for
every eligible cardholder; suspended, resumed and closed by action), the items deferred, the monthly bills
and the repayments read here. Money moves only through the services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import (
    ReadOnlyAdmin,
    ServiceFormAdmin,
    reason_column,
    reason_filter,
    tenant_admin,
)
from citycard.platform.errors import DomainError
from citycard.tenants.credit import selectors, services
from citycard.tenants.credit.models import (
    CodeRideFlag,
    CodeRideReview,
    CreditBill,
    CreditItem,
    CreditLine,
    CreditRepayment,
    CreditRules,
    LineState,
    RoamingFare,
    RoamingPayment,
)
from citycard.terminal_kit.money import yuan


def _actor(request) -> str:
    return f"user:{request.user.username}"


@admin.register(CreditRules, site=tenant_admin)
class CreditRulesAdmin(ServiceFormAdmin):
    list_display = (
        "__str__",
        "enabled",
        "limit",
        "active_months",
        "require_insured",
        "due_day",
        "grace_days",
    )
    fields = (
        "enabled",
        "require_insured",
        "active_months",
        "birth_decade_min",
        "birth_decade_max",
        "schemes",
        "limit_fen",
        "due_day",
        "grace_days",
        "minimum_bps",
    )
    actions = ["grant_eligible"]

    def has_add_permission(self, request):
        return not CreditRules.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("limit"))
    def limit(self, obj):
        return yuan(obj.limit_fen)

    def save_model(self, request, obj, form, change):
        saved = services.credit_rules_set(
            actor=_actor(request), **{name: form.cleaned_data[name] for name in self.fields}
        )
        obj.pk = saved.pk

    @admin.action(description=_("Grant credit lines to every eligible cardholder"))
    def grant_eligible(self, request, queryset):
        try:
            lines = services.credit_grant(actor=_actor(request))
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, _("%(count)d credit lines granted") % {"count": len(lines)})


@admin.register(CreditLine, site=tenant_admin)
class CreditLineAdmin(ReadOnlyAdmin):
    list_display = ("card_no", "state", "limit", "owed", "state_reason", "granted_at")
    list_filter = ("state",)
    search_fields = ("=card_no",)
    actions = ["suspend_selected", "resume_selected", "close_selected", "reopen_selected"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("receivable")

    @admin.display(description=_("limit"))
    def limit(self, obj):
        return yuan(obj.limit_fen)

    @admin.display(description=_("owed"))
    def owed(self, obj):
        return yuan(-obj.receivable.balance_fen)

    def _state(self, request, queryset, state):
        for line in queryset:
            try:
                services.credit_line_state_set(
                    card_no=line.card_no,
                    state=state,
                    reason=f"{state} in the admin by {request.user.username}"
                    if state != LineState.ACTIVE
                    else "",
                    actor=_actor(request),
                )
            except DomainError as exc:
                self.message_user(request, f"{line.card_no}: {exc.message}", messages.ERROR)

    @admin.action(description=_("Suspend the selected credit lines"))
    def suspend_selected(self, request, queryset):
        self._state(request, queryset, LineState.SUSPENDED)

    @admin.action(description=_("Resume the selected credit lines"))
    def resume_selected(self, request, queryset):
        self._state(request, queryset, LineState.ACTIVE)

    @admin.action(description=_("Close the selected credit lines"))
    def close_selected(self, request, queryset):
        self._state(request, queryset, LineState.CLOSED)

    @admin.action(description=_("Reopen the selected closed credit lines (eligibility checked again)"))
    def reopen_selected(self, request, queryset):
        reopened = 0
        for line in queryset:
            try:
                services.credit_line_reopen(card_no=line.card_no, actor=_actor(request))
                reopened += 1
            except DomainError as exc:
                self.message_user(request, f"{line.card_no}: {exc.message}", messages.ERROR)
        if reopened:
            self.message_user(request, _("%(count)d credit lines reopened") % {"count": reopened})


@admin.register(CreditItem, site=tenant_admin)
class CreditItemAdmin(ReadOnlyAdmin):
    list_display = ("at", "line", "kind", "payee", "payment_id", "amount_fen", "month", "bill")
    list_filter = ("kind", "month")
    search_fields = ("=payment_id", "=line__card_no")


@admin.register(CreditBill, site=tenant_admin)
class CreditBillAdmin(ReadOnlyAdmin):
    list_display = (
        "month",
        "line",
        "items_fen",
        "full_due_fen",
        "minimum_due_fen",
        "paid_fen",
        "due_on",
        "state",
    )
    list_filter = ("state", "month")
    search_fields = ("=line__card_no",)


@admin.register(CreditRepayment, site=tenant_admin)
class CreditRepaymentAdmin(ReadOnlyAdmin):
    list_display = ("at", "line", "source", "amount_fen", "key", "order_no")
    list_filter = ("source",)
    search_fields = ("=key", "=line__card_no")


@admin.register(RoamingFare, site=tenant_admin)
class RoamingFareAdmin(ReadOnlyAdmin):
    """This city's cardholders' citizen-code rides in other cities, accepted by its clearing validation and
    booked against them by ``online_fares_book`` (异地扫码乘车)."""

    list_display = ("tapped_at", "card_no", "acquirer", "payee", "amount_fen", "record_id", "booked_at")
    list_filter = ("acquirer",)
    search_fields = ("=card_no", "=record_id")


@admin.register(RoamingPayment, site=tenant_admin)
class RoamingPaymentAdmin(ReadOnlyAdmin):
    """This city's cardholders' citizen-code payments at other cities' merchants, accepted by its clearing
    validation and booked onto their credit line or online account (异地商户扫码支付); one neither could pay
    is no row here but a ``no_funds`` rejection of the record."""

    list_display = ("paid_at", "card_no", "acquirer", "payee", "amount", "source", "record_id", "booked_at")
    list_filter = ("acquirer", "source")
    search_fields = ("=card_no", "=record_id")

    @admin.display(description=_("amount"))
    def amount(self, obj):
        return yuan(obj.amount_fen)


@admin.register(CodeRideFlag, site=tenant_admin)
class CodeRideFlagAdmin(ReadOnlyAdmin):
    """Citizen-code rides the verification stage flagged and holds (电子市民码复核): the clerk charges one after
    review (复核后扣费: booked against the cardholder once, or for another city's card left to its issuer
    through clearing) or waives it (免收). Only a flag whose code's signature holds can be charged."""

    code_shown = reason_column("code", _("code"))
    list_display = (
        "created_at",
        "code_shown",
        "card_no",
        "transaction_id",
        "amount",
        "decision",
        "resolved_at",
    )
    list_filter = (reason_filter("code", _("code")),)
    search_fields = ("=card_no",)
    actions = ["charge_selected", "waive_selected"]

    def get_queryset(self, request):
        return selectors.code_flags()

    @admin.display(description=_("amount"))
    def amount(self, obj):
        return yuan(obj.amount_fen)

    @admin.display(description=_("decision"))
    def decision(self, obj):
        review = getattr(obj, "code_review", None)
        return "—" if review is None else f"{review.get_decision_display()}: {review.get_outcome_display()}"

    def _decide(self, request, queryset, decide, done):
        count = 0
        for flag in queryset:
            try:
                decide(flag_id=flag.pk, actor=_actor(request), note=_("in the admin"))
                count += 1
            except DomainError as exc:
                self.message_user(request, f"{flag.card_no}: {exc.message}", messages.ERROR)
        if count:
            self.message_user(request, done % {"count": count})

    @admin.action(description=_("Charge the selected rides after review (复核后扣费)"))
    def charge_selected(self, request, queryset):
        self._decide(request, queryset, services.code_ride_charge, _("%(count)d rides charged after review"))

    @admin.action(description=_("Waive the selected rides (免收)"))
    def waive_selected(self, request, queryset):
        self._decide(request, queryset, services.code_ride_waive, _("%(count)d rides waived"))


@admin.register(CodeRideReview, site=tenant_admin)
class CodeRideReviewAdmin(ReadOnlyAdmin):
    list_display = (
        "decided_at",
        "transaction_id",
        "card_no",
        "amount_fen",
        "decision",
        "outcome",
        "decided_by",
    )
    list_filter = ("decision", "outcome")
    search_fields = ("=card_no", "=record_id")

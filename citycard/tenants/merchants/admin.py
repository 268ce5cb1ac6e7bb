"""Tenant admin: merchants onboarded through the service (the settlement account typed once, then only
shown masked), suspended and resumed by action; their terminals, payments, refunds and settlements read
here. Money moves only through the services."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Concat
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import ReadOnlyAdmin, ServiceFormAdmin, tenant_admin
from citycard.platform.errors import DomainError
from citycard.platform.models import Role
from citycard.platform.reasons import reason_html
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.merchants import services
from citycard.tenants.merchants.models import (
    Means,
    Merchant,
    MerchantState,
    MerchantTerminal,
    Payment,
    Refund,
    Settlement,
)
from citycard.terminal_kit.money import yuan


def _actor(request) -> str:
    return f"user:{request.user.username}"


class MerchantOnboardForm(forms.ModelForm):
    settlement_account = forms.CharField(
        max_length=40,
        label=_("settlement account"),
        help_text=_("The bank account number; kept encrypted, shown masked."),
    )
    accepted_means = forms.MultipleChoiceField(
        choices=Means.choices, widget=forms.CheckboxSelectMultiple, label=_("accepted means")
    )

    class Meta:
        model = Merchant
        fields = ("code", "name", "licence_no", "category", "department", "settlement_bank", "fee_bps")


@admin.register(Merchant, site=tenant_admin)
class MerchantAdmin(ServiceFormAdmin):
    list_display = ("code", "name", "category", "department", "fee_bps", "state", "to_settle", "owes_back")
    list_filter = ("state", "category", "department")
    search_fields = ("code", "name", "licence_no")
    actions = ["suspend_selected", "resume_selected"]
    readonly = (
        "code",
        "name",
        "licence_no",
        "category",
        "department",
        "settlement_bank",
        "settlement_account_masked",
        "fee_bps",
        "accepted_means",
        "state",
        "state_reason",
        "payable",
        "owes_back",
        "onboarded_at",
        "onboarded_by",
    )

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = MerchantOnboardForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return (*MerchantOnboardForm.Meta.fields, "settlement_account", "accepted_means")
        return self.readonly

    def get_readonly_fields(self, request, obj=None):
        return self.readonly if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("to settle"))
    def to_settle(self, obj):
        return yuan(obj.payable.balance_fen)

    @admin.display(description=_("owes back (rejected after settlement)"))
    def owes_back(self, obj):
        """What the merchant owes the city: roaming payments paid out, then rejected by their issuer."""
        return yuan(-(obj.owes_back_fen or 0))

    @admin.display(description=_("settlement account"))
    def settlement_account_masked(self, obj):
        return obj.settlement_account_masked

    def get_queryset(self, request):
        # A department officer sees and manages its own department's merchants only (谁主管谁负责).
        qs = (
            super()
            .get_queryset(request)
            .select_related("payable")
            .annotate(
                owes_back_fen=Subquery(
                    LedgerAccount.objects.filter(
                        code=Concat(Value(services.CHARGEBACK_PREFIX), OuterRef("code"))
                    ).values("balance_fen")[:1]
                )
            )
        )
        if request.user.role == Role.DEPARTMENT_OFFICER:
            qs = qs.filter(department=request.user.department)
        return qs

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        if request.user.role == Role.DEPARTMENT_OFFICER:
            initial.setdefault("department", request.user.department)
        return initial

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        created = services.merchant_onboard(
            code=data["code"],
            name=data["name"],
            licence_no=data["licence_no"],
            category=data["category"],
            department=data.get("department") or "",
            settlement_bank=data["settlement_bank"],
            settlement_account=data["settlement_account"],
            fee_bps=data["fee_bps"],
            accepted_means=list(data["accepted_means"]),
            actor=_actor(request),
            role=request.user.role,
            role_department=request.user.department,
        )
        obj.pk = created.pk

    def _state(self, request, queryset, state, reason):
        for merchant in queryset:
            try:
                services.merchant_state_set(
                    code=merchant.code,
                    state=state,
                    reason=reason,
                    actor=_actor(request),
                    role=request.user.role,
                    role_department=request.user.department,
                )
            except DomainError as exc:
                self.message_user(request, f"{merchant.code}: {exc}", messages.ERROR)

    @admin.action(description=_("Suspend the selected merchants"))
    def suspend_selected(self, request, queryset):
        self._state(
            request, queryset, MerchantState.SUSPENDED, f"suspended in the admin by {request.user.username}"
        )

    @admin.action(description=_("Resume the selected merchants"))
    def resume_selected(self, request, queryset):
        self._state(request, queryset, MerchantState.ACTIVE, "")


@admin.register(MerchantTerminal, site=tenant_admin)
class MerchantTerminalAdmin(ReadOnlyAdmin):
    list_display = ("terminal", "merchant", "registered_at")
    list_filter = ("merchant",)


@admin.register(Payment, site=tenant_admin)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = (
        "at",
        "merchant",
        "means",
        "payment_id",
        "amount_fen",
        "refunded_fen",
        "issuer_tenant",
        "settlement",
        "rejection",
    )
    list_filter = ("means", "charged_back_from", "merchant")
    search_fields = ("=payment_id", "=card_no")

    @admin.display(description=_("rejected by the issuer"))
    def rejection(self, obj):
        """The issuer's reason (拒付原因) and where it was charged back from; empty: not rejected."""
        if obj.rejected_at is None:
            return ""
        return format_html("{} · {}", reason_html(obj.rejection_reason), obj.get_charged_back_from_display())


@admin.register(Refund, site=tenant_admin)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("at", "refund_id", "payment", "amount_fen", "settlement", "actor")
    search_fields = ("=refund_id",)


@admin.register(Settlement, site=tenant_admin)
class SettlementAdmin(ReadOnlyAdmin):
    list_display = (
        "day",
        "merchant",
        "payments",
        "refunds",
        "gross_fen",
        "refunds_fen",
        "fee_fen",
        "net_fen",
    )
    list_filter = ("day", "merchant")
    date_hierarchy = "day"

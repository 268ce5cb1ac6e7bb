"""Tenant admin: a department's entitlement types (权益类型) with the administrator's approval, the grants
(granted by hand, revoked with a reason), and the uses at service points. Every change goes through the
services, which audit it."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import ReadOnlyAdmin, ServiceFormAdmin, tenant_admin
from citycard.platform.errors import DomainError
from citycard.platform.models import Role
from citycard.tenants.entitlements import services
from citycard.tenants.entitlements.models import Entitlement, EntitlementType, EntitlementUse, VisitorUse

TYPE_FIELDS = (
    "code",
    "name",
    "department",
    "categories",
    "age_min",
    "age_max",
    "residence",
    "schemes",
    "valid_from",
    "valid_to",
    "period_days",
    "quota_period",
    "quota",
    "price_fen",
    "service_points",
    "auto_grant",
)


def _actor(request) -> str:
    return f"user:{request.user.username}"


@admin.register(EntitlementType, site=tenant_admin)
class EntitlementTypeAdmin(ServiceFormAdmin):
    list_display = (
        "code",
        "name",
        "department",
        "status",
        "price_fen",
        "quota_period",
        "quota",
        "auto_grant",
    )
    list_filter = ("status", "department", "auto_grant")
    search_fields = ("code", "name")
    fields = (*TYPE_FIELDS, "status", "approved_by", "approved_at", "created_by", "created_at")
    actions = ["approve_selected"]

    def get_queryset(self, request):
        # A department officer sees its own department's types only (谁主管谁负责).
        qs = super().get_queryset(request)
        if request.user.role == Role.DEPARTMENT_OFFICER:
            qs = qs.filter(department__code=request.user.department)
        return qs

    def get_actions(self, request):
        actions = super().get_actions(request)
        if request.user.role != services.approver_role():
            actions.pop("approve_selected", None)  # the service refuses them anyway
        return actions

    def get_readonly_fields(self, request, obj=None):
        # A type is defined once; what changes later is its approval (a changed right is a new type).
        if obj is not None:
            return self.fields
        return ("status", "approved_by", "approved_at", "created_by", "created_at")

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        created = services.entitlement_type_create(
            **{f: data.get(f) for f in TYPE_FIELDS if f != "department"},
            department=data["department"].code,
            role=request.user.role,
            role_department=request.user.department,
            actor=_actor(request),
        )
        obj.pk = created.pk

    @admin.action(description=_("Approve the selected entitlement types"))
    def approve_selected(self, request, queryset):
        for kind in queryset:
            try:
                services.entitlement_type_approve(
                    code=kind.code, actor=_actor(request), role=request.user.role
                )
            except DomainError as exc:
                self.message_user(request, f"{kind.code}: {exc}", messages.ERROR)


@admin.register(Entitlement, site=tenant_admin)
class EntitlementAdmin(ServiceFormAdmin):
    list_display = ("type", "cardholder_id", "valid_from", "valid_to", "source", "granted_by", "revoked_at")
    list_filter = ("type", "source")
    search_fields = ("=cardholder_id",)
    fields = ("type", "cardholder_id", "valid_from", "valid_to")
    actions = ["revoke_selected"]

    def get_queryset(self, request):
        # A department officer sees and grants its own department's entitlements only.
        qs = super().get_queryset(request)
        if request.user.role == Role.DEPARTMENT_OFFICER:
            qs = qs.filter(type__department__code=request.user.department)
        return qs

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "type" and request.user.role == Role.DEPARTMENT_OFFICER:
            kwargs["queryset"] = EntitlementType.objects.filter(department__code=request.user.department)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)  # revoked, not edited

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        created = services.entitlement_grant(
            type=data["type"].code,
            cardholder_id=data["cardholder_id"],
            valid_from=data.get("valid_from"),
            valid_to=data.get("valid_to"),
            actor=_actor(request),
            role=request.user.role,
            role_department=request.user.department,
        )
        obj.pk = created.pk

    @admin.action(description=_("Revoke the selected entitlements"))
    def revoke_selected(self, request, queryset):
        for grant in queryset.filter(revoked_at__isnull=True):
            try:
                services.entitlement_revoke(
                    entitlement_id=grant.pk,
                    reason="revoked in the admin",
                    actor=_actor(request),
                    role=request.user.role,
                    role_department=request.user.department,
                )
            except DomainError as exc:
                self.message_user(request, f"{grant.pk}: {exc}", messages.ERROR)


@admin.register(EntitlementUse, site=tenant_admin)
class EntitlementUseAdmin(ReadOnlyAdmin):
    list_display = ("at", "service_point", "card_no", "channel", "offline", "terminal_id")
    list_filter = ("service_point", "channel", "offline")
    search_fields = ("=card_no",)


@admin.register(VisitorUse, site=tenant_admin)
class VisitorUseAdmin(ReadOnlyAdmin):
    list_display = ("at", "service_point", "card_no", "home_tenant", "home_type", "channel")
    list_filter = ("home_tenant", "service_point")
    search_fields = ("=card_no",)

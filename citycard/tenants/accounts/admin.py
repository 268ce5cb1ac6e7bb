"""Tenant admin: accounts, postings and subsidies are read here; money moves only through the services."""

from __future__ import annotations

from django.contrib import admin

from citycard.platform.admin_sites import ReadOnlyAdmin, tenant_admin
from citycard.tenants.accounts.models import (
    LedgerAccount,
    Leg,
    Posting,
    PurseShadow,
    SubsidyItem,
    SubsidyPayment,
    SubsidyProgramme,
    SubsidyRun,
)


class LegInline(admin.TabularInline):
    model = Leg
    extra = 0
    fields = ("account", "amount_fen")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LedgerAccount, site=tenant_admin)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("code", "kind", "card_no", "balance_fen", "overdraft_fen", "opened_at")
    list_filter = ("kind",)
    search_fields = ("=card_no", "code")


@admin.register(Posting, site=tenant_admin)
class PostingAdmin(ReadOnlyAdmin):
    list_display = ("at", "kind", "amount_fen", "memo", "idempotency_key", "actor")
    list_filter = ("kind",)
    inlines = [LegInline]


@admin.register(PurseShadow, site=tenant_admin)
class PurseShadowAdmin(ReadOnlyAdmin):
    list_display = ("card_no", "balance_fen", "last_counter", "updated_at", "closed")
    search_fields = ("=card_no",)


@admin.register(SubsidyProgramme, site=tenant_admin)
class SubsidyProgrammeAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "category", "department", "active")


class SubsidyItemInline(LegInline):
    model = SubsidyItem
    fields = ("item", "amount_fen")
    readonly_fields = fields


@admin.register(SubsidyRun, site=tenant_admin)
class SubsidyRunAdmin(ReadOnlyAdmin):
    list_display = ("programme", "period", "on", "payments", "total_fen", "at")


@admin.register(SubsidyPayment, site=tenant_admin)
class SubsidyPaymentAdmin(ReadOnlyAdmin):
    list_display = ("run", "cardholder_id", "amount_fen")
    search_fields = ("=cardholder_id",)
    inlines = [SubsidyItemInline]

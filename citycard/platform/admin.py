"""Platform admin (tenants, networks, users) and the user admin of each tenant."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserCreationForm

from citycard.platform import services
from citycard.platform.admin_sites import platform_admin, tenant_admin
from citycard.platform.errors import DomainError
from citycard.platform.models import (
    TENANT_ROLES,
    Domain,
    NetworkMembership,
    RoamingNetwork,
    Role,
    Tenant,
    TenantKind,
    User,
)


def _actor(request) -> str:
    return f"user:{request.user.username}"


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0
    fields = ("domain", "is_primary")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class TenantCreationForm(forms.ModelForm):
    """Creating a tenant goes through services.tenant_create (schema cloned, domain added)."""

    parent_code = forms.CharField(required=False, help_text="For a county: its city's tenant code.")

    class Meta:
        model = Tenant
        fields = ("code", "division_code", "name_zh", "name_en")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name_zh"].required = False
        self.fields["name_en"].required = False
        self.fields["division_code"].required = True

    FIELD_OF = {"code": "code", "division": "division_code", "parent": "parent_code"}

    def validate_unique(self):
        pass  # tenant_check_new reports duplicates with its own messages

    def clean(self):
        data = super().clean()
        try:
            services.tenant_check_new(
                code=data.get("code") or "",
                division_code=data.get("division_code") or "",
                parent_code=data.get("parent_code") or None,
            )
        except DomainError as exc:
            self.add_error(self.FIELD_OF.get(exc.field or ""), str(exc))
        return data


@admin.register(Tenant, site=platform_admin)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("code", "name_zh", "name_en", "division_code", "kind", "parent", "status")
    list_filter = ("kind", "status", "province")
    search_fields = ("code", "name_zh", "name_en", "division_code")
    inlines = [DomainInline]
    actions = ["suspend_selected", "activate_selected"]

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(kind=TenantKind.PLATFORM).select_related("parent")

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = TenantCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("code", "division_code", "parent_code", "name_zh", "name_en")
        return (
            "code",
            "name_zh",
            "name_en",
            "division_code",
            "province",
            "kind",
            "parent",
            "status",
            "status_reason",
            "created_at",
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (
            "code",
            "division_code",
            "province",
            "kind",
            "parent",
            "status",
            "status_reason",
            "created_at",
        )

    def get_inline_instances(self, request, obj=None):
        return super().get_inline_instances(request, obj) if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name_zh", "name_en"])
            return
        tenant = services.tenant_create(
            code=form.cleaned_data["code"],
            division_code=form.cleaned_data["division_code"],
            name_zh=form.cleaned_data.get("name_zh") or None,
            name_en=form.cleaned_data.get("name_en") or None,
            parent_code=form.cleaned_data.get("parent_code") or None,
            actor=_actor(request),
        )
        obj.pk = tenant.pk

    @admin.action(description="Suspend selected tenants", permissions=["change"])
    def suspend_selected(self, request, queryset):
        for tenant in queryset:
            try:
                services.tenant_suspend(
                    code=tenant.code, reason="suspended from the platform admin", actor=_actor(request)
                )
            except DomainError as exc:
                self.message_user(request, str(exc), level=messages.WARNING)

    @admin.action(description="Re-activate selected tenants", permissions=["change"])
    def activate_selected(self, request, queryset):
        for tenant in queryset:
            try:
                services.tenant_activate(code=tenant.code, actor=_actor(request))
            except DomainError as exc:
                self.message_user(request, str(exc), level=messages.WARNING)


class MembershipInline(admin.TabularInline):
    model = NetworkMembership
    extra = 0
    fields = ("tenant", "joined_on", "left_on")
    autocomplete_fields = ("tenant",)


@admin.register(RoamingNetwork, site=platform_admin)
class RoamingNetworkAdmin(admin.ModelAdmin):
    list_display = ("code", "name_zh", "name_en", "member_count")
    readonly_fields = ("code",)
    inlines = [MembershipInline]

    @admin.display(description="members")
    def member_count(self, obj):
        return obj.memberships.filter(left_on__isnull=True).count()


class PlatformUserCreationForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "role", "tenant")


@admin.register(User, site=platform_admin)
class PlatformUserAdmin(UserAdmin):
    add_form = PlatformUserCreationForm
    list_display = ("username", "role", "tenant", "is_active", "last_login")
    list_filter = ("role", "is_active")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Role", {"fields": ("role", "tenant", "is_active")}),
        ("Person", {"fields": ("first_name", "last_name", "email")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"fields": ("username", "role", "tenant", "password1", "password2")}),)
    readonly_fields = ("last_login", "date_joined")
    filter_horizontal = ()

    def save_model(self, request, obj, form, change):
        obj.is_staff = True
        super().save_model(request, obj, form, change)


class TenantUserCreationForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username",)


class TenantUserAdmin(PlatformUserAdmin):
    """A city administrator manages the users of their own tenant only."""

    add_form = TenantUserCreationForm
    list_display = ("username", "role", "is_active", "last_login")
    list_filter = ("is_active",)
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Role", {"fields": ("role", "is_active")}),
        ("Person", {"fields": ("first_name", "last_name", "email")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"fields": ("username", "password1", "password2")}),)
    readonly_fields = ("role", "last_login", "date_joined")

    def get_queryset(self, request):
        return super().get_queryset(request).filter(tenant_id=request.tenant.pk, role__in=list(TENANT_ROLES))

    def save_model(self, request, obj, form, change):
        if not change:
            obj.tenant = request.tenant
            obj.role = Role.CITY_ADMIN if request.tenant.kind == TenantKind.CITY else Role.COUNTY_OFFICER
        elif obj.tenant_id != request.tenant.pk:  # pragma: no cover - queryset already excludes it
            raise PermissionError("user of another tenant")
        super().save_model(request, obj, form, change)


tenant_admin.register(User, TenantUserAdmin)

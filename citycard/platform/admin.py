"""Platform admin (tenants, networks, users) and the user admin of each tenant."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from citycard.platform import services
from citycard.platform.admin_sites import platform_admin, tenant_admin
from citycard.platform.errors import DomainError
from citycard.platform.models import (
    TENANT_ROLES,
    ApiKey,
    Domain,
    NetworkMembership,
    RoamingNetwork,
    Role,
    Tenant,
    TenantKind,
    User,
)
from citycard.platform.scopes import Scope


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

    parent_code = forms.CharField(
        required=False, help_text=_("For a county: its city's tenant code."), label=_("parent code")
    )

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

    @admin.action(description=_("Suspend selected tenants"), permissions=["change"])
    def suspend_selected(self, request, queryset):
        for tenant in queryset:
            try:
                services.tenant_suspend(
                    code=tenant.code, reason="suspended from the platform admin", actor=_actor(request)
                )
            except DomainError as exc:
                self.message_user(request, str(exc), level=messages.WARNING)

    @admin.action(description=_("Re-activate selected tenants"), permissions=["change"])
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

    @admin.display(description=_("members"))
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
        (_("Role"), {"fields": ("role", "tenant", "is_active")}),
        (_("Person"), {"fields": ("first_name", "last_name", "email")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
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
        (_("Role"), {"fields": ("role", "is_active")}),
        (_("Person"), {"fields": ("first_name", "last_name", "email")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
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


# --------------------------------------------------------------------------------------------------
# API keys of partner apps: a city administrator issues and revokes its own tenant's keys; platform
# operators see every key and may revoke. The token is shown once, in the message after issuing.
# --------------------------------------------------------------------------------------------------


class ApiKeyIssueForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, label=_("scopes")
    )
    expires_at = forms.DateTimeField(
        required=False, help_text=_("Default: in 365 days; at most 3 years."), label=_("expires at")
    )

    class Meta:
        model = ApiKey
        fields = ("name",)

    def validate_unique(self):
        pass

    def clean(self):
        from django.utils import timezone

        data = super().clean()
        expires = data.get("expires_at")
        if expires is not None and expires <= timezone.now():
            self.add_error("expires_at", "the expiry must be in the future")
        return data


def _revoke(modeladmin, request, queryset):
    done = 0
    for key in queryset.select_related("tenant").filter(revoked_at__isnull=True):
        try:
            services.api_key_revoke(
                tenant_code=key.tenant.code,
                key_id=key.key_id,
                reason=f"revoked in the admin by {request.user.username}",
                actor=_actor(request),
            )
            done += 1
        except DomainError as exc:
            modeladmin.message_user(request, f"{key.key_id}: {exc}", messages.ERROR)
    modeladmin.message_user(request, _("revoked %(n)d key(s)") % {"n": done})


class ApiKeyAdminBase(admin.ModelAdmin):
    list_display = ("name", "key_id", "token", "scope_list", "expires_at", "state", "last_used_at")
    readonly_fields = (
        "tenant",
        "name",
        "key_id",
        "token",
        "scopes",
        "created_at",
        "created_by",
        "expires_at",
        "revoked_at",
        "revoked_by",
        "revoke_reason",
        "last_used_at",
    )
    actions = ["revoke_selected"]

    @admin.display(description=_("token"))
    def token(self, obj):
        return f"…{obj.last4}"

    @admin.display(description=_("scopes"))
    def scope_list(self, obj):
        return " ".join(obj.scopes)

    @admin.display(description=_("state"))
    def state(self, obj):
        from django.utils import timezone

        return "revoked" if obj.is_revoked else ("expired" if obj.is_expired(timezone.now()) else "active")

    @admin.action(description=_("Revoke the selected keys"), permissions=["change"])
    def revoke_selected(self, request, queryset):
        _revoke(self, request, queryset)

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiKey, site=platform_admin)
class PlatformApiKeyAdmin(ApiKeyAdminBase):
    list_display = ("tenant", *ApiKeyAdminBase.list_display)
    list_filter = ("tenant",)

    def has_add_permission(self, request):
        return False


class TenantApiKeyAdmin(ApiKeyAdminBase):
    def get_queryset(self, request):
        return super().get_queryset(request).filter(tenant_id=request.tenant.pk)

    def has_add_permission(self, request):
        return request.user.role == Role.CITY_ADMIN and super().has_add_permission(request)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyIssueForm
            kwargs["fields"] = ("name", "scopes", "expires_at")
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        return ("name", "scopes", "expires_at") if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            return
        try:
            key, token = services.api_key_issue(
                tenant_code=request.tenant.code,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.cleaned_data.get("expires_at"),
                actor=_actor(request),
            )
        except DomainError as exc:
            raise ValidationError(str(exc)) from exc
        obj.__dict__.update({k: v for k, v in key.__dict__.items() if not k.startswith("_")})
        self.message_user(
            request,
            _("API key %(key_id)s for %(name)s: %(token)s — copy it now, it is not shown again.")
            % {"key_id": key.key_id, "name": key.name, "token": token},
            messages.WARNING,
        )


tenant_admin.register(ApiKey, TenantApiKeyAdmin)

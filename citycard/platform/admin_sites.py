"""The two admin sites: the platform's (on the base domain) and a tenant's (on its own domain).

A platform user signs in only on the platform site; a tenant user only on its own tenant's site, and
only while that tenant is active (the rule: access.site_refusal). The sign-in form refuses anyone else on
the form itself, before a session exists. What each may see there follows its role (see roles.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.admin import AdminSite, ModelAdmin, SimpleListFilter, display
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpResponseRedirect
from django.utils.translation import gettext_lazy as _

from citycard.platform.access import is_site_member, site_refusal
from citycard.platform.errors import DomainError
from citycard.platform.reasons import reason_html, reason_text


def _current_tenant(request):
    return getattr(request, "tenant", None) or getattr(connection, "tenant", None)


class SiteAuthenticationForm(AdminAuthenticationForm):
    """The admin's sign-in form, refusing a user who does not belong to this site (another tenant's
    user, a county officer on its city's site, a platform user on a tenant's site, a tenant user on the
    platform's). Refused here, the login never reaches ``login()``: no session row, no session cookie."""

    def confirm_login_allowed(self, user) -> None:
        super().confirm_login_allowed(user)  # inactive or not staff: Django's own messages
        refusal = site_refusal(user=user, tenant=_current_tenant(self.request))
        if refusal is not None:
            raise ValidationError(refusal, code="wrong_site")


class PlatformAdminSite(AdminSite):
    site_header = _("CityCard Interop · platform")
    site_title = _("CityCard platform")
    index_title = _("Tenants, roaming networks and clearing")
    login_form = SiteAuthenticationForm

    def has_permission(self, request) -> bool:
        tenant = _current_tenant(request)
        return bool(
            tenant is not None and tenant.is_platform and is_site_member(user=request.user, tenant=tenant)
        )


class TenantAdminSite(AdminSite):
    site_title = _("CityCard")
    index_title = _("Citizen-card administration")
    login_form = SiteAuthenticationForm

    def has_permission(self, request) -> bool:
        tenant = _current_tenant(request)
        return bool(
            tenant is not None and not tenant.is_platform and is_site_member(user=request.user, tenant=tenant)
        )

    def each_context(self, request):
        context = super().each_context(request)
        tenant = _current_tenant(request)
        if tenant is not None and tenant.schema_name != "public":
            context["site_header"] = _("%(name)s citizen card · %(name_en)s") % {
                "name": tenant.name_zh,
                "name_en": tenant.name_en,
            }
        return context


platform_admin = PlatformAdminSite(name="platform_admin")
tenant_admin = TenantAdminSite(name="tenant_admin")


class ReadOnlyAdmin(ModelAdmin):
    """An admin page that shows and never writes: records only their services write (ledgers, batches,
    messages, cycles) are read here, whoever the user."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ServiceFormAdmin(ModelAdmin):
    """An admin page whose form saves through a service (``save_model`` calls it): a refusal of the service
    comes back to the page as one message and the form again, with nothing written (the view's transaction
    is rolled back), never a server error."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


def reason_filter(
    field: str, title: Any, text: Callable[[str], str] = reason_text, **where: Any
) -> type[SimpleListFilter]:
    """A change list filter on a reason or review-flag code column, each code shown with its label
    (platform/reasons.py) and filtering on the code itself. ``where``: the rows that can have one (the
    codes are read from those only, e.g. through a partial index)."""

    class ReasonFilter(SimpleListFilter):
        parameter_name = field

        def lookups(self, request, model_admin):
            codes = (
                model_admin.model._default_manager.filter(**where).order_by().values_list(field, flat=True)
            )
            codes = codes.distinct()
            return [(code, text(code)) for code in sorted(c for c in codes if c)]

        def queryset(self, request, queryset):
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    ReasonFilter.title = title
    return ReasonFilter


def reason_column(
    field: str, description: Any, html: Callable[[str], str] = reason_html
) -> Callable[[Any, Any], str]:
    """A change list column showing a reason or review-flag code as its label with the code beside it."""

    @display(description=description, ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return html(getattr(obj, field))

    return column

"""The audit log, read-only, on the platform admin and on every tenant admin."""

from __future__ import annotations

import re
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import platform_admin, reason_column, reason_filter, tenant_admin
from citycard.platform.audit.models import AuditEntry


def _object_types() -> dict[str, Any]:
    """An audit entry's object type (a model's name in snake case, e.g. ``service_point``) to the model's
    verbose name, for the project's models."""
    types = {
        re.sub(r"(?<!^)(?=[A-Z])", "_", model.__name__).lower(): model._meta.verbose_name
        for model in apps.get_models()
        if model.__module__.startswith("citycard.")
    }
    for code, model in _SHORT_NAMES.items():
        types[code] = apps.get_model(model)._meta.verbose_name
    return types


# Object types the services audit under a short name rather than their model's.
_SHORT_NAMES = {
    "agreement": "interop.RoamingAgreement",
    "cycle": "interop.ClearingCycle",
    "network": "platform.RoamingNetwork",
    "record": "interop.ClearingRecord",
    "apikey": "platform.ApiKey",
    "message": "interop.ReceivedMessage",
}


def object_type_text(code: str) -> str:
    """``持卡人 (cardholder)``; the code alone for a type that is no model."""
    label = _object_types().get(code)
    return code if label is None else f"{label} ({code})"


def object_type_html(code: str) -> str:
    label = _object_types().get(code)
    if label is None:
        return format_html("<code>{}</code>", code)
    return format_html('{} <code class="muted">{}</code>', label, code)


class AuditEntryAdmin(admin.ModelAdmin):
    object_type_shown = reason_column("object_type", _("object type"), html=object_type_html)
    list_display = ("seq", "at", "actor", "action", "object_type_shown", "object_id")
    list_filter = ("action", reason_filter("object_type", _("object type"), text=object_type_text))
    search_fields = ("object_id", "actor", "action")
    readonly_fields = [f.name for f in AuditEntry._meta.fields]
    ordering = ("-seq",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


platform_admin.register(AuditEntry, AuditEntryAdmin)
tenant_admin.register(AuditEntry, AuditEntryAdmin)

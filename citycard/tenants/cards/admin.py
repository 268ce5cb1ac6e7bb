"""Tenant admin for city administrators: schemes, cardholders (searched by name, card number or ID number
through the blind index), cards with lifecycle actions behind a confirmation page and each card's audit
trail, the hotlist. Every change goes through the services; personal data is shown masked."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from citycard.platform.admin_sites import tenant_admin
from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import DomainError
from citycard.tenants.cards import services
from citycard.tenants.cards.models import (
    Card,
    Cardholder,
    CardholderCategory,
    CardScheme,
    CategoryCode,
    HotlistEntry,
)
from citycard.tenants.cards.pii import decade_label, id_number_parse, phone_normalise
from citycard.tenants.cards.selectors import (
    cardholder_access_log,
    cardholder_search,
    cardholder_search_ref,
    schemes_visible,
)


def _actor(request) -> str:
    return f"user:{request.user.username}"


def _is_county() -> bool:
    return getattr(getattr(connection, "tenant", None), "kind", "") == "county"


@admin.register(CardScheme, site=tenant_admin)
class CardSchemeAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name_zh",
        "is_main",
        "real_name",
        "anonymous_allowed",
        "one_per_person",
        "virtual",
        "validity_years",
        "card_fee_fen",
        "replacement_fee_fen",
        "enabled",
    )
    exclude = ("next_serial",)

    def has_add_permission(self, request):
        return not _is_county() and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return not _is_county() and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        """A county sees its city's published schemes (verified), not a table of its own."""
        if not _is_county():
            return super().changelist_view(request, extra_context)
        tenant = connection.tenant
        context = {
            **self.admin_site.each_context(request),
            "tenant": tenant.code,
            "city": tenant.clearing_tenant.code,
            "opts": self.model._meta,
            "title": _("Card schemes"),
        }
        try:
            schemes = schemes_visible(tenant=tenant)
        except DomainError as exc:
            context["error"] = str(exc)
        else:
            context["schemes"] = [
                {
                    **s,
                    "card_fee_yuan": f"{s['card_fee_fen'] / 100:.2f}",
                    "replacement_fee_yuan": f"{s['replacement_fee_fen'] / 100:.2f}",
                }
                for s in schemes
            ]
        return TemplateResponse(request, "admin/cards/city_schemes.html", context)

    def save_model(self, request, obj, form, change):
        fields = {
            name: form.cleaned_data[name] for name in services.SCHEME_FIELDS if name in form.cleaned_data
        }
        saved = services.scheme_save(
            code=form.cleaned_data.get("code", obj.code), actor=_actor(request), **fields
        )
        obj.pk = saved.pk


class CategoryFilter(admin.SimpleListFilter):
    title = "category"
    parameter_name = "category"

    def lookups(self, request, model_admin):
        return CategoryCode.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(categories__code=self.value()).distinct()
        return queryset


class CategoryInline(admin.TabularInline):
    model = CardholderCategory
    extra = 0
    fields = ("code", "valid_from", "valid_to", "evidence")


class CardInline(admin.TabularInline):
    model = Card
    fk_name = "cardholder"
    extra = 0
    fields = ("card_no", "scheme", "state", "issued_at", "expires_on")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class CardholderRegistrationForm(forms.ModelForm):
    """Registering goes through services.cardholder_register (ID checked, encrypted, audit written)."""

    id_number = forms.CharField(
        max_length=18, help_text=_("18 characters; checked against its GB 11643 digit."), label=_("id number")
    )
    phone = forms.CharField(max_length=20, required=False, label=_("phone"))
    address = forms.CharField(max_length=200, required=False, label=_("address"))

    def clean_id_number(self) -> str:
        return _clean(
            lambda v, field: id_number_parse(v, field=field).number, self.cleaned_data["id_number"], "id"
        )

    def clean_phone(self) -> str:
        return _clean(phone_normalise, self.cleaned_data.get("phone", ""), "phone")

    class Meta:
        model = Cardholder
        fields = (
            "name",
            "local_hukou",
            "local_social_insurance",
            "residence_permit",
            "employer",
            "community",
        )


def _clean(check, value: str, field: str) -> str:
    """A service's pure check as a form error, so a bad value is refused on the form, not by a 500."""
    if not (value or "").strip():
        return ""
    try:
        return check(value, field=field)
    except DomainError as exc:
        raise forms.ValidationError(exc.message) from None


class CardholderChangeForm(forms.ModelForm):
    """Changes go through services.cardholder_update: a new phone or address is typed in full (the stored
    ones are shown masked only) and left empty to keep what is stored."""

    new_phone = forms.CharField(
        max_length=20, required=False, help_text=_("Leave empty to keep the phone."), label=_("new phone")
    )
    new_address = forms.CharField(
        max_length=200,
        required=False,
        help_text=_("Leave empty to keep the address."),
        label=_("new address"),
    )

    def clean_new_phone(self) -> str:
        return _clean(phone_normalise, self.cleaned_data.get("new_phone", ""), "new_phone")

    def clean_name(self) -> str:
        name = (self.cleaned_data.get("name") or "").strip()
        if not name or len(name) > 60:
            raise forms.ValidationError(_("the cardholder needs a name of 1–60 characters"))
        return name

    class Meta:
        model = Cardholder
        fields = (
            "name",
            "photo_ref",
            "local_hukou",
            "local_social_insurance",
            "residence_permit",
            "employer",
            "community",
        )


class NumberSearchMixin:
    """Searching by ID or phone number without leaving the number in an address: it is sent by POST (the
    find-by-number form) or, when typed in the search box, at once replaced by its ``ref:`` term (its blind
    index), so browser history, server logs and the page's own links never hold it."""

    change_list_template = "admin/cards/number_search_change_list.html"

    def changelist_view(self, request, extra_context=None):
        finding = request.method == "POST" and "find" in request.POST
        typed = request.POST.get("find", "") if finding else request.GET.get("q", "")
        ref = cardholder_search_ref(query=typed) if typed else None
        if ref is not None or finding:
            query = request.GET.copy()
            query["q"] = ref or typed.strip()
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
        return super().changelist_view(request, extra_context)


@admin.register(Cardholder, site=tenant_admin)
class CardholderAdmin(NumberSearchMixin, admin.ModelAdmin):
    list_display = ("name", "id_masked", "phone_masked", "born", "sex", "category_list", "employer")
    list_filter = (CategoryFilter, "cards__scheme__code", "cards__state", "sex", "local_hukou")
    search_fields = ("name",)
    search_help_text = _("Name (prefix), card number, phone or ID number (exact, through the blind index).")
    inlines = [CategoryInline, CardInline]
    readonly_fields = (
        "id_masked",
        "phone_masked",
        "address_masked",
        "born",
        "sex",
        "access_log",
        "created_at",
        "created_by",
    )

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        ids = cardholder_search(query=search_term).values("pk")
        return queryset.filter(pk__in=ids), True

    @admin.display(description=_("categories"))
    def category_list(self, obj):
        return ", ".join(sorted({c.code for c in obj.categories.all()}))

    @admin.display(description=_("born (decade)"), ordering="birth_decade")
    def born(self, obj):
        return decade_label(obj.birth_decade)

    @admin.display(description=_("access log"))
    def access_log(self, obj):
        url = reverse("tenant_admin:cards_cardholder_access_log", args=[obj.pk])
        return format_html('<a href="{}">Who read this cardholder\'s data</a>', url)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("categories")

    def get_urls(self):
        view = self.admin_site.admin_view(self.access_log_view)
        return [
            path("<int:object_id>/access-log/", view, name="cards_cardholder_access_log"),
            *super().get_urls(),
        ]

    def access_log_view(self, request, object_id: int):
        """Who read this cardholder's data, under which grant or key (个人信息查询记录)."""
        holder = Cardholder.objects.filter(pk=object_id).first()
        if holder is None or not self.has_view_permission(request, holder):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": holder,
            "title": _("Access log: %(name)s %(id)s") % {"name": holder.name, "id": holder.id_masked},
            "reads": cardholder_access_log(cardholder_id=holder.pk),
        }
        return TemplateResponse(request, "admin/cards/access_log.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """An officer's look at a cardholder is a read of personal data: logged like any other read."""
        if request.method == "GET" and str(object_id).isdigit():
            services.cardholder_read_record(
                cardholder_id=int(object_id), actor=_actor(request), page="admin: cardholder page"
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, **kwargs):
        kwargs["form"] = CardholderChangeForm if obj is not None else CardholderRegistrationForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return [
                "name",
                "id_number",
                "phone",
                "address",
                "local_hukou",
                "local_social_insurance",
                "residence_permit",
                "employer",
                "community",
            ]
        return [
            "name",
            *self.readonly_fields,
            "new_phone",
            "new_address",
            "photo_ref",
            "local_hukou",
            "local_social_insurance",
            "residence_permit",
            "employer",
            "community",
        ]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else ()

    def get_inlines(self, request, obj):
        return self.inlines if obj else []

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            if change:
                changes = {f: data[f] for f in CardholderChangeForm.Meta.fields if f in form.changed_data}
                changes.update({f[4:]: data[f] for f in ("new_phone", "new_address") if data.get(f)})
                services.cardholder_update(cardholder_id=obj.pk, changes=changes, actor=_actor(request))
                return
            created = services.cardholder_register(
                name=data["name"],
                id_number=data["id_number"],
                phone=data.get("phone", ""),
                address=data.get("address", ""),
                local_hukou=data.get("local_hukou", False),
                local_social_insurance=data.get("local_social_insurance", False),
                residence_permit=data.get("residence_permit", False),
                employer=data.get("employer", ""),
                community=data.get("community", ""),
                actor=_actor(request),
            )
        except DomainError as exc:
            messages.error(request, str(exc))
            raise
        obj.pk = created.pk


# (service, past participle, needs a reason)
LIFECYCLE = {
    "produce_selected": (services.card_produce, _("mark produced"), False),
    "issue_selected": (services.card_issue, _("issue"), False),
    "activate_selected": (services.card_activate, _("activate"), False),
    "ss_activate_selected": (services.card_ss_activate, _("activate social security on"), False),
    "report_lost_selected": (services.card_report_lost, _("report lost (frozen, on the hotlist)"), False),
    "unfreeze_selected": (services.card_unfreeze, _("unfreeze (off the hotlist)"), False),
    "replace_selected": (services.card_replace, _("replace"), False),
    "cancel_selected": (services.card_cancel, _("cancel"), True),
}


def _lifecycle_action(name: str):
    service, verb, needs_reason = LIFECYCLE[name]

    def action(modeladmin, request, queryset):
        cards = list(queryset.select_related("scheme", "cardholder"))
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "admin/cards/confirm_action.html",
                {
                    **modeladmin.admin_site.each_context(request),
                    "title": _("Confirm: %(verb)s") % {"verb": verb},
                    "question": _("%(verb)s these %(n)d card(s)?") % {"verb": verb, "n": len(cards)},
                    "cards": cards,
                    "action": name,
                    "verb": verb,
                    "needs_reason": needs_reason,
                    "opts": modeladmin.model._meta,
                },
            )
        done, refused = 0, []
        for card in cards:
            kwargs = {"card_no": card.card_no, "actor": _actor(request)}
            if needs_reason:
                kwargs["reason"] = request.POST.get("reason", "")
            try:
                service(**kwargs)
                done += 1
            except DomainError as exc:
                refused.append(str(exc))
        if done:
            messages.success(request, _("%(verb)s: %(n)d card(s)") % {"verb": verb, "n": done})
        for message in refused:
            messages.error(request, message)
        return None

    action.__name__ = name
    return admin.action(description=format_lazy(_("Selected cards: {verb}…"), verb=verb))(action)


@admin.register(Card, site=tenant_admin)
class CardAdmin(NumberSearchMixin, admin.ModelAdmin):
    list_display = (
        "card_no",
        "cardholder",
        "scheme",
        "state",
        "is_main",
        "issued_at",
        "expires_on",
        "ss_activated_at",
    )
    list_filter = (
        "scheme__code",
        "state",
        "is_main",
        ("cardholder__categories__code", admin.AllValuesFieldListFilter),
    )
    search_fields = ("=card_no",)
    search_help_text = _("Card number, or the holder's name, phone or ID number.")
    list_select_related = ("scheme", "cardholder")
    actions = [_lifecycle_action(name) for name in LIFECYCLE]
    readonly_fields = (
        "card_no",
        "scheme",
        "cardholder",
        "is_main",
        "state",
        "applied_at",
        "produced_at",
        "issued_at",
        "activated_at",
        "ss_activated_at",
        "frozen_at",
        "closed_at",
        "expires_on",
        "fee_fen",
        "replaces",
        "source",
        "audit_trail",
    )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if len(term) == 19 and term.isdigit():
            return queryset.filter(card_no=term), False
        return queryset.filter(cardholder__in=cardholder_search(query=term).values("pk")), True

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return not _is_county() and super().has_change_permission(request, obj)

    def get_actions(self, request):
        return {} if _is_county() else super().get_actions(request)

    @admin.display(description=_("audit trail"))
    def audit_trail(self, obj):
        query = Q(object_type="card", object_id=obj.card_no)
        if obj.source.startswith("import:"):  # batch issuance audits once per chunk, listing its cards
            batch = obj.source.removeprefix("import:").rsplit(":", 1)[0]
            query |= Q(object_type="card_batch", object_id=batch, payload__contains=f'"{obj.card_no}"')
        entries = AuditEntry.objects.filter(query).order_by("seq")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    e.at.strftime("%Y-%m-%d %H:%M:%S"),
                    e.action,
                    e.actor,
                    e.payload if e.object_type == "card" else f"batch {e.object_id} ({len(e.payload)} bytes)",
                )
                for e in entries
            ),
        )
        return format_html(
            "<table><tr><th>at</th><th>action</th><th>by</th><th>data</th></tr>{}</table>", rows
        )


@admin.register(HotlistEntry, site=tenant_admin)
class HotlistEntryAdmin(admin.ModelAdmin):
    list_display = ("card_no", "reason", "listed_at", "version_added", "removed_at", "version_removed")
    list_filter = ("reason",)
    search_fields = ("=card_no",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

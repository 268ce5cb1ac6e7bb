"""Changing schemes, cardholders, cards and the hotlist. Each function is one business action, atomic,
writes an audit entry and refuses bad input or a wrong state with a DomainError (nothing written)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import Conflict, DomainError, NotFound, county_refuse
from citycard.platform.keys import tenant_card_tac_master
from citycard.platform.publications import publication_publish
from citycard.platform.selectors import rate_limit_count
from citycard.platform.services import rate_limit_hit
from citycard.tenants.cards.models import (
    LIVE_STATES,
    Application,
    Card,
    Cardholder,
    CardholderCategory,
    CardScheme,
    CardState,
    CategoryCode,
    Eligibility,
    HotlistEntry,
    HotlistHead,
)
from citycard.tenants.cards.pii import (
    Sealer,
    address_mask,
    birth_decade,
    current_tenant,
    id_mask,
    id_number_parse,
    phone_mask,
    phone_normalise,
)
from citycard.tenants.cards.selectors import cardholder_verify, hotlist_payload, scheme_document
from citycard.tenants.cards.signals import card_changed, card_replaced, cardholder_changed
from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.day import issuer_keys_document
from citycard.terminal_kit.devkeys import SIM_KEYS

# The schemes of DESIGN §4 and the seeds (杭州/嘉兴/东莞 市民卡方案): what a new city starts with.
DEFAULT_SCHEMES: list[dict[str, Any]] = [
    {
        "code": "01",
        "name_zh": "社会保障·市民卡",
        "name_en": "Social security citizen card",
        "is_main": True,
        "eligibility": [Eligibility.LOCAL_HUKOU, Eligibility.LOCAL_SOCIAL_INSURANCE],
        "real_name": True,
        "anonymous_allowed": False,
        "one_per_person": True,
        "applications": [
            Application.SOCIAL_SECURITY,
            Application.MEDICAL,
            Application.TRANSIT,
            Application.ONLINE_ACCOUNT,
            Application.LIBRARY,
            Application.PARK_PASS,
        ],
        "validity_years": 10,
        "card_fee_fen": 0,
        "replacement_fee_fen": 2000,
    },
    {
        "code": "02",
        "name_zh": "新居民卡",
        "name_en": "New resident card",
        "is_main": False,
        "eligibility": [Eligibility.RESIDENCE_PERMIT],
        "real_name": True,
        "anonymous_allowed": False,
        "one_per_person": True,
        "applications": [
            Application.SOCIAL_SECURITY,
            Application.MEDICAL,
            Application.TRANSIT,
            Application.ONLINE_ACCOUNT,
            Application.LIBRARY,
        ],
        "validity_years": 5,
        "card_fee_fen": 0,
        "replacement_fee_fen": 2000,
    },
    {
        "code": "03",
        "name_zh": "城市通卡",
        "name_en": "City pass card",
        "is_main": False,
        "eligibility": [Eligibility.ANYONE],
        "real_name": False,
        "anonymous_allowed": True,
        "one_per_person": False,
        "applications": [Application.TRANSIT, Application.LIBRARY],
        "validity_years": 6,
        "card_fee_fen": 2000,
        "replacement_fee_fen": 2000,
    },
    {
        "code": "04",
        "name_zh": "电子市民码",
        "name_en": "Electronic citizen code",
        "is_main": False,
        "virtual": True,
        "eligibility": [Eligibility.ANYONE],
        "real_name": True,
        "anonymous_allowed": False,
        "one_per_person": True,
        "applications": [Application.TRANSIT, Application.ONLINE_ACCOUNT, Application.LIBRARY],
        "validity_years": 3,
        "card_fee_fen": 0,
        "replacement_fee_fen": 0,
    },
]

SCHEME_FIELDS = (
    "name_zh",
    "name_en",
    "is_main",
    "eligibility",
    "real_name",
    "anonymous_allowed",
    "one_per_person",
    "virtual",
    "applications",
    "validity_years",
    "card_fee_fen",
    "replacement_fee_fen",
    "account_overdraft_fen",
    "enabled",
)

# What a county takes from its city here (platform.errors.county_refuse).
_CARDS_INHERITED: dict[str, Any] = {
    "inherits": gettext_lazy("card schemes and cards"),
    "code": "county_read_only",
}


# --- schemes ------------------------------------------------------------------------------------------


@transaction.atomic
def scheme_save(*, code: str, actor: str, **fields: Any) -> CardScheme:
    """Create or update card scheme ``code`` (卡种). Only a city defines schemes."""
    county_refuse(current_tenant(), cannot=gettext("change card schemes"), **_CARDS_INHERITED)
    unknown = set(fields) - set(SCHEME_FIELDS)
    if unknown:
        raise DomainError(
            gettext("unknown scheme fields: %(unknown)s") % {"unknown": ", ".join(sorted(unknown))},
            field=sorted(unknown)[0],
        )
    if not (isinstance(code, str) and len(code) == 2 and code.isdigit()):
        raise DomainError(gettext("scheme code %(code)r must be 2 digits") % {"code": code}, field="code")
    for name in ("eligibility", "applications"):
        allowed = Eligibility.values if name == "eligibility" else Application.values
        bad = [v for v in fields.get(name, []) if v not in allowed]
        if bad:
            raise DomainError(
                gettext("unknown %(name)s: %(bad)s; use %(allowed)s")
                % {"name": name, "bad": ", ".join(bad), "allowed": ", ".join(allowed)},
                field=name,
            )
    for name in ("card_fee_fen", "replacement_fee_fen", "account_overdraft_fen"):
        value = fields.get(name, 0)
        if type(value) is not int or value < 0:
            raise DomainError(
                gettext("%(name)s must be a whole number of fen, not negative") % {"name": name}, field=name
            )
    scheme = CardScheme.objects.select_for_update().filter(code=code).first()
    created = scheme is None
    if created:
        if not fields.get("eligibility") or not fields.get("applications") or not fields.get("name_zh"):
            raise DomainError(
                gettext("a new scheme needs name_zh, eligibility and applications"), field="name_zh"
            )
        scheme = CardScheme(code=code)
    for name, value in fields.items():
        setattr(scheme, name, value)
    if not scheme.real_name and not scheme.anonymous_allowed:
        raise DomainError(gettext("a scheme is real-name, anonymous or both"), field="anonymous_allowed")
    if scheme.is_main and not scheme.real_name:
        raise DomainError(gettext("the main card is a real-name card"), field="real_name")
    scheme.save()
    audit_record(
        action="scheme.create" if created else "scheme.update",
        actor=actor,
        object_type="card_scheme",
        object_id=code,
        data={k: v for k, v in fields.items()},
    )
    return scheme


@transaction.atomic
def schemes_seed(*, actor: str) -> list[CardScheme]:
    """Give a city the four standard schemes it lacks (re-running changes nothing)."""
    out = []
    for spec in DEFAULT_SCHEMES:
        existing = CardScheme.objects.filter(code=spec["code"]).first()
        if existing is not None:
            out.append(existing)
            continue
        fields = {k: v for k, v in spec.items() if k != "code"}
        out.append(scheme_save(code=spec["code"], actor=actor, **fields))
    return out


def schemes_publish(*, actor: str):
    """Publish this city's schemes, signed, for its counties (and partners) to read (卡种发布)."""
    tenant = current_tenant()
    county_refuse(tenant, cannot=gettext("publish card schemes"), **_CARDS_INHERITED)
    return publication_publish(tenant=tenant, kind="card-schemes", payload=scheme_document(), actor=actor)


def hotlist_publish(*, actor: str):
    """Publish the full hotlist, signed, for the network and peers (kind ``hotlist``; the terminal download
    serves deltas itself). Publishing an unchanged list returns the current publication."""
    current = hotlist_payload()
    payload = {"cards": current["cards"], "hotlist_version": current["version"]}
    return publication_publish(tenant=current_tenant(), kind="hotlist", payload=payload, actor=actor)


# --- cardholders -------------------------------------------------------------------------------------


def _check_categories(categories: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in categories:
        code = item.get("code")
        if code not in CategoryCode.values:
            raise DomainError(
                gettext("unknown category %(code)r; use %(values)s")
                % {"code": code, "values": ", ".join(CategoryCode.values)},
                field="categories",
            )
        start, end = item.get("valid_from"), item.get("valid_to")
        if not isinstance(start, dt.date) or (end is not None and not isinstance(end, dt.date)):
            raise DomainError(
                gettext("category %(code)s needs valid_from (and optional valid_to) dates") % {"code": code},
                field="categories",
            )
        if end is not None and end < start:
            raise DomainError(
                gettext("category %(code)s ends (%(end)s) before it starts (%(start)s)")
                % {"code": code, "end": end, "start": start},
                field="categories",
            )
        out.append({"code": code, "valid_from": start, "valid_to": end, "evidence": item.get("evidence", "")})
    return out


@transaction.atomic
def cardholder_register(
    *,
    name: str,
    id_number: str,
    phone: str = "",
    address: str = "",
    photo_ref: str = "",
    local_hukou: bool = False,
    local_social_insurance: bool = False,
    residence_permit: bool = False,
    employer: str = "",
    community: str = "",
    categories: Iterable[Mapping[str, Any]] = (),
    actor: str,
) -> Cardholder:
    """Register a cardholder (持卡人登记). Sex and the decade of birth come from the checked ID number; the ID
    number, phone and address are stored encrypted; a person already registered (same ID number) is a
    Conflict."""
    county_refuse(
        current_tenant(),
        cannot=gettext("register cardholders (its windows serve the city's)"),
        **_CARDS_INHERITED,
    )
    name = (name or "").strip()
    if not name or len(name) > 60:
        raise DomainError(gettext("the cardholder needs a name of 1–60 characters"), field="name")
    parsed = id_number_parse(id_number)
    phone = phone_normalise(phone) if phone else ""
    address = _check_address(address)
    checked = _check_categories(categories)
    sealer = Sealer()
    blind = sealer.blind("id", parsed.number)
    if Cardholder.objects.filter(id_blind=blind).exists():
        raise Conflict(
            gettext("a cardholder with ID number %(number)s is already registered")
            % {"number": id_mask(parsed.number)},
            field="id_number",
        )
    holder = Cardholder.objects.create(
        name=name,
        id_cipher=sealer.seal("id", parsed.number),
        id_blind=blind,
        id_masked=id_mask(parsed.number),
        phone_cipher=sealer.seal("phone", phone) if phone else None,
        phone_blind=sealer.blind("phone", phone) if phone else "",
        phone_masked=phone_mask(phone) if phone else "",
        key_id=sealer.key_id,
        birth_decade=birth_decade(parsed.birth_date),
        sex=parsed.sex,
        address_cipher=sealer.seal("address", address) if address else None,
        address_masked=address_mask(address),
        photo_ref=photo_ref,
        local_hukou=local_hukou,
        local_social_insurance=local_social_insurance,
        residence_permit=residence_permit,
        employer=employer,
        community=community,
        created_at=timezone.now(),
        created_by=actor,
    )
    CardholderCategory.objects.bulk_create(CardholderCategory(cardholder=holder, **c) for c in checked)
    audit_record(
        action="cardholder.register",
        actor=actor,
        object_type="cardholder",
        object_id=holder.pk,
        data={"categories": [c["code"] for c in checked]},
    )
    cardholder_changed.send(sender=Cardholder, cardholder=holder, reason="register")
    return holder


def cardholder_read_record(*, cardholder_id: int, actor: str, page: str, fields: Iterable[str] = ()) -> None:
    """Record that ``actor`` looked at a cardholder's data (the masked page counts too): the cardholder's
    access log (``selectors.cardholder_access_log``) shows it."""
    audit_record(
        action="admin.read",
        actor=actor,
        object_type="cardholder",
        object_id=cardholder_id,
        data={
            "page": page,
            "reads": [
                {
                    "type": "cardholder",
                    "ids": [str(cardholder_id)],
                    "fields": sorted(fields) or ["name", "id_masked", "phone_masked", "address_masked"],
                }
            ],
        },
    )


def age_category_from(birth_date: dt.date, *, years: int) -> dt.date:
    """When an age category (敬老 at 60 or 70) starts: the first day of the month after the birthday (次月起).
    Keeping the day out of the category's dates also keeps the birth date out of the cardholder's data."""
    month = birth_date.month % 12 + 1
    return dt.date(birth_date.year + years + (birth_date.month == 12), month, 1)


def _check_address(address: str) -> str:
    address = (address or "").strip()
    if len(address) > 200:
        raise DomainError(gettext("the address must be at most 200 characters"), field="address")
    return address


# What an officer may change of a registered cardholder; the ID number (and so sex and birth) never changes.
CARDHOLDER_EDITABLE = (
    "name",
    "phone",
    "address",
    "local_hukou",
    "local_social_insurance",
    "residence_permit",
    "employer",
    "community",
    "photo_ref",
)


@transaction.atomic
def cardholder_update(*, cardholder_id: int, changes: Mapping[str, Any], actor: str) -> Cardholder:
    """Change a cardholder's details (持卡人信息变更): personal fields are sealed again and masked; the audit
    entry names the fields changed, never their values."""
    unknown = sorted(set(changes) - set(CARDHOLDER_EDITABLE))
    if unknown:
        raise DomainError(
            gettext("%(unknown)s cannot be changed (only %(CARDHOLDER_EDITABLE)s)")
            % {"unknown": ", ".join(unknown), "CARDHOLDER_EDITABLE": ", ".join(CARDHOLDER_EDITABLE)},
            field=unknown[0],
        )
    holder = Cardholder.objects.select_for_update().filter(pk=cardholder_id).first()
    if holder is None:
        raise NotFound(
            gettext("no cardholder %(cardholder_id)s") % {"cardholder_id": cardholder_id},
            field="cardholder_id",
        )
    sealer = Sealer()
    if holder.key_id != sealer.key_id:  # one key per row: move the row's other ciphers first
        _reseal(holder, sealer)
    changed = []
    for field, value in changes.items():
        if field == "name":
            value = (value or "").strip()
            if not value or len(value) > 60:
                raise DomainError(gettext("the cardholder needs a name of 1–60 characters"), field="name")
            if value != holder.name:
                holder.name = value
                changed.append(field)
        elif field == "phone":
            phone = phone_normalise(value) if (value or "").strip() else ""
            blind = sealer.blind("phone", phone) if phone else ""
            if blind != holder.phone_blind:
                holder.phone_cipher = sealer.seal("phone", phone) if phone else None
                holder.phone_blind, holder.phone_masked = blind, phone_mask(phone) if phone else ""
                changed.append(field)
        elif field == "address":
            address = _check_address(value)
            old = (
                sealer.open("address", holder.address_cipher, holder.key_id) if holder.address_cipher else ""
            )
            if address != old:
                holder.address_cipher = sealer.seal("address", address) if address else None
                holder.address_masked = address_mask(address)
                changed.append(field)
        elif field in ("local_hukou", "local_social_insurance", "residence_permit"):
            if not isinstance(value, bool):
                raise DomainError(gettext("%(field)s must be true or false") % {"field": field}, field=field)
            if value != getattr(holder, field):
                setattr(holder, field, value)
                changed.append(field)
        else:
            value = (value or "").strip()
            limit = Cardholder._meta.get_field(field).max_length
            if len(value) > limit:
                raise DomainError(
                    gettext("%(field)s must be at most %(limit)s characters")
                    % {"field": field, "limit": limit},
                    field=field,
                )
            if value != getattr(holder, field):
                setattr(holder, field, value)
                changed.append(field)
    if changed or holder.key_id != sealer.key_id:
        holder.save()
    if changed:
        audit_record(
            action="cardholder.update",
            actor=actor,
            object_type="cardholder",
            object_id=holder.pk,
            data={"fields": sorted(changed)},
        )
    return holder


def _reseal(holder: Cardholder, sealer: Sealer) -> None:
    """Every cipher of ``holder`` under the sealer's current key (in memory; the caller saves)."""
    for field, attr in (("id", "id_cipher"), ("phone", "phone_cipher"), ("address", "address_cipher")):
        blob = getattr(holder, attr)
        if blob is not None:
            setattr(holder, attr, sealer.seal(field, sealer.open(field, blob, holder.key_id)))
    holder.key_id = sealer.key_id


@transaction.atomic
def cardholder_category_grant(
    *,
    cardholder_id: int,
    code: str,
    valid_from: dt.date,
    valid_to: dt.date | None = None,
    evidence: str = "",
    actor: str,
) -> CardholderCategory:
    """Put a cardholder in a rider category for a period (e.g. 敬老 from the 60th/70th birthday)."""
    holder = Cardholder.objects.filter(pk=cardholder_id).first()
    if holder is None:
        raise NotFound(
            gettext("no cardholder %(cardholder_id)s") % {"cardholder_id": cardholder_id},
            field="cardholder_id",
        )
    (item,) = _check_categories(
        [{"code": code, "valid_from": valid_from, "valid_to": valid_to, "evidence": evidence}]
    )
    try:
        with transaction.atomic():
            category = CardholderCategory.objects.create(cardholder=holder, **item)
    except IntegrityError:
        raise Conflict(
            gettext("%(code)s from %(valid_from)s is already recorded for this cardholder")
            % {"code": code, "valid_from": valid_from},
            field="valid_from",
        ) from None
    audit_record(
        action="cardholder.category_grant",
        actor=actor,
        object_type="cardholder",
        object_id=holder.pk,
        data={"code": code, "valid_from": valid_from, "valid_to": valid_to},
    )
    cardholder_changed.send(sender=Cardholder, cardholder=holder, reason="category")
    return category


@transaction.atomic
def cardholder_pii_reencrypt(*, actor: str, limit: int = 10_000) -> int:
    """Re-encrypt personal data still under a retired data key with the current one (after
    ``citycard keys rotate --purpose data``); returns how many rows moved. Run until it returns 0."""
    sealer = Sealer()
    rows = list(Cardholder.objects.select_for_update().exclude(key_id=sealer.key_id).order_by("pk")[:limit])
    for holder in rows:
        _reseal(holder, sealer)
    Cardholder.objects.bulk_update(
        rows, ["id_cipher", "phone_cipher", "address_cipher", "key_id"], batch_size=1000
    )
    if rows:
        audit_record(
            action="cardholder.reencrypt",
            actor=actor,
            object_type="data_key",
            object_id=sealer.key_id,
            data={"rows": len(rows)},
        )
    return len(rows)


# --- cards -------------------------------------------------------------------------------------------


def _scheme(code: str) -> CardScheme:
    scheme = CardScheme.objects.filter(code=code).first()
    if scheme is None:
        raise NotFound(gettext("no card scheme %(code)r here") % {"code": code}, field="scheme_code")
    if not scheme.enabled:
        raise DomainError(
            gettext("card scheme %(code)s (%(scheme)s) is disabled")
            % {"code": code, "scheme": scheme.name_zh},
            code="scheme_disabled",
            field="scheme_code",
        )
    return scheme


def scheme_eligible(*, scheme: CardScheme, holder: Cardholder | None) -> bool:
    """Whether ``holder`` (None: an anonymous applicant) meets one of the scheme's eligibility rules."""
    if Eligibility.ANYONE in scheme.eligibility:
        return True
    if holder is None:
        return False
    held = {
        Eligibility.LOCAL_HUKOU: holder.local_hukou,
        Eligibility.LOCAL_SOCIAL_INSURANCE: holder.local_social_insurance,
        Eligibility.RESIDENCE_PERMIT: holder.residence_permit,
    }
    return any(held.get(e, False) for e in scheme.eligibility)


def serials_take(*, scheme: CardScheme, count: int) -> int:
    """Reserve ``count`` serials of ``scheme``; returns the first (row-locked, so numbers never repeat)."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE cards_cardscheme SET next_serial = next_serial + %s WHERE id = %s RETURNING next_serial - %s",
            [count, scheme.pk, count],
        )
        return cur.fetchone()[0]


def _card(card_no: str, *, lock: bool = True) -> Card:
    qs = Card.objects.select_for_update() if lock else Card.objects
    card = qs.select_related("scheme").filter(card_no=card_no).first()
    if card is None:
        raise NotFound(gettext("no card %(card_no)r here") % {"card_no": card_no}, field="card_no")
    return card


# The verbs of the card's transitions as a person reads them in a refusal (the code keeps the English verb).
_ACTIONS = {
    "produce": gettext_lazy("produce"),
    "issue": gettext_lazy("issue"),
    "activate": gettext_lazy("activate"),
    "report lost": gettext_lazy("report lost"),
    "activate social security on": gettext_lazy("activate social security on"),
    "unfreeze": gettext_lazy("unfreeze"),
    "replace": gettext_lazy("replace"),
    "cancel": gettext_lazy("cancel"),
}


def _require(card: Card, action: str, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if card.state not in allowed:
        raise DomainError(
            gettext(
                "cannot %(action)s card %(card_no)s: it is %(state)s, and only a card that is %(allowed)s can be"
            )
            % {
                "action": _ACTIONS.get(action, action),
                "card_no": card.card_no,
                "state": CardState(card.state).label,
                "allowed": gettext(" or ").join(str(CardState(s).label) for s in allowed),
            },
            code="invalid_state",
            field="state",
        )


def _audit_card(card: Card, action: str, actor: str, **data: Any) -> None:
    audit_record(
        action=f"card.{action}",
        actor=actor,
        object_type="card",
        object_id=card.card_no,
        data={"state": card.state, **data},
    )
    if card.cardholder_id is not None:
        card_changed.send(sender=Card, card=card, action=action)


@transaction.atomic
def card_apply(
    *,
    scheme_code: str,
    cardholder_id: int | None = None,
    source: str = "",
    request_key: str | None = None,
    actor: str,
    at: dt.datetime | None = None,
) -> Card:
    """Apply for a card (申领): checks eligibility, real-name and one-per-person, takes the next number.

    With ``request_key`` (e.g. the channel's request id) a retried application returns the card the first
    one created instead of applying twice."""
    tenant = current_tenant()
    county_refuse(tenant, cannot=gettext("issue cards"), **_CARDS_INHERITED)
    if request_key is not None:
        if not request_key or len(request_key) > 80:
            raise DomainError(gettext("request_key must be 1–80 characters"), field="request_key")
        earlier = Card.objects.filter(request_key=request_key).first()
        if earlier is not None:
            if earlier.scheme.code != scheme_code or earlier.cardholder_id != cardholder_id:
                raise Conflict(
                    gettext("request %(request_key)s was for another card") % {"request_key": request_key},
                    field="request_key",
                )
            return earlier
    scheme = _scheme(scheme_code)
    holder = None
    if cardholder_id is not None:
        holder = Cardholder.objects.select_for_update().filter(pk=cardholder_id).first()
        if holder is None:
            raise NotFound(
                gettext("no cardholder %(cardholder_id)s") % {"cardholder_id": cardholder_id},
                field="cardholder_id",
            )
    elif not scheme.anonymous_allowed:
        raise DomainError(
            gettext("%(scheme)s is a real-name card: give the cardholder") % {"scheme": scheme.name_zh},
            field="cardholder_id",
        )
    if not scheme_eligible(scheme=scheme, holder=holder):
        raise DomainError(
            gettext("the cardholder is not eligible for %(scheme)s (needs one of: %(eligibility)s)")
            % {"scheme": scheme.name_zh, "eligibility": ", ".join(scheme.eligibility)},
            code="not_eligible",
            field="scheme_code",
        )
    if (
        holder is not None
        and scheme.one_per_person
        and (Card.objects.filter(cardholder=holder, scheme=scheme, state__in=LIVE_STATES).exists())
    ):
        raise Conflict(
            gettext("the cardholder already has a %(scheme)s; report it lost and replace it instead")
            % {"scheme": scheme.name_zh},
            code="one_per_person",
            field="scheme_code",
        )
    if (
        holder is not None
        and scheme.is_main
        and (Card.objects.filter(cardholder=holder, is_main=True, state__in=LIVE_STATES).exists())
    ):
        raise Conflict(
            gettext("the cardholder already has a main card"), code="one_main_card", field="scheme_code"
        )
    serial = serials_take(scheme=scheme, count=1)
    card = Card(
        card_no=card_number_build(division=tenant.division_code, scheme=scheme.code, serial=serial),
        scheme=scheme,
        cardholder=holder,
        is_main=scheme.is_main,
        state=CardState.APPLIED,
        applied_at=at or timezone.now(),
        fee_fen=scheme.card_fee_fen,
        source=source,
        request_key=request_key,
    )
    try:
        with transaction.atomic():
            card.save(force_insert=True)
    except IntegrityError as exc:
        if "card_one_live_main_per_person" in str(exc):
            raise Conflict(
                gettext("the cardholder already has a main card"), code="one_main_card", field="scheme_code"
            ) from None
        raise
    _audit_card(card, "apply", actor, scheme=scheme.code, cardholder=holder.pk if holder else None)
    return card


def _transition(
    card_no: str,
    action: str,
    allowed: Iterable[str],
    target: str,
    stamp: str,
    actor: str,
    at: dt.datetime | None,
    refuse: Callable[..., None] | None = None,
    **data: Any,
) -> Card:
    card = _card(card_no)
    if refuse is not None:  # a rule of the action beyond the card's state (raises DomainError)
        refuse(card=card)
    _require(card, action, allowed)
    card.state = target
    setattr(card, stamp, at or timezone.now())
    card.save(update_fields=["state", stamp])
    _audit_card(card, action, actor, **data)
    return card


@transaction.atomic
def card_produce(*, card_no: str, actor: str, at: dt.datetime | None = None) -> Card:
    """The card is personalised (制卡)."""
    return _transition(card_no, "produce", [CardState.APPLIED], CardState.PRODUCED, "produced_at", actor, at)


@transaction.atomic
def card_issue(*, card_no: str, actor: str, at: dt.datetime | None = None) -> Card:
    """The card is handed to the cardholder (发卡); its validity starts."""
    card = _transition(card_no, "issue", [CardState.PRODUCED], CardState.ISSUED, "issued_at", actor, at)
    issued = card.issued_at.date()
    try:
        card.expires_on = issued.replace(year=issued.year + card.scheme.validity_years)
    except ValueError:  # 29 February
        card.expires_on = issued.replace(year=issued.year + card.scheme.validity_years, day=28)
    card.save(update_fields=["expires_on"])
    return card


@transaction.atomic
def card_activate(*, card_no: str, actor: str, at: dt.datetime | None = None) -> Card:
    """The cardholder starts using the card (启用)."""
    return _transition(card_no, "activate", [CardState.ISSUED], CardState.ACTIVE, "activated_at", actor, at)


@transaction.atomic
def card_ss_activate(*, card_no: str, actor: str, at: dt.datetime | None = None) -> Card:
    """Social-security activation (社保应用激活): its own step, on an active card of a social-security scheme."""
    card = _card(card_no)
    if Application.SOCIAL_SECURITY not in card.scheme.applications:
        raise DomainError(
            gettext("%(scheme)s has no social-security application") % {"scheme": card.scheme.name_zh},
            code="no_social_security",
            field="card_no",
        )
    _require(card, "activate social security on", [CardState.ACTIVE])
    if card.ss_activated_at is not None:
        raise Conflict(
            gettext("social security on card %(card_no)s was activated at %(ss_activated_at)s")
            % {"card_no": card_no, "ss_activated_at": format(card.ss_activated_at, "%Y-%m-%d %H:%M")},
            code="already_activated",
            field="card_no",
        )
    card.ss_activated_at = at or timezone.now()
    card.save(update_fields=["ss_activated_at"])
    _audit_card(card, "ss_activate", actor)
    return card


def _hotlist_bump(at: dt.datetime) -> int:
    head = HotlistHead.objects.select_for_update().get(pk=1)
    head.version += 1
    head.changed_at = at
    head.save(update_fields=["version", "changed_at"])
    return head.version


def _hotlist_add(card_no: str, reason: str, at: dt.datetime, actor: str) -> HotlistEntry | None:
    if HotlistEntry.objects.filter(card_no=card_no, removed_at__isnull=True).exists():
        return None
    version = _hotlist_bump(at)
    return HotlistEntry.objects.create(
        card_no=card_no, reason=reason, listed_at=at, version_added=version, actor=actor
    )


@transaction.atomic
def card_restrict(
    *, card_no: str, reason: str, actor: str, at: dt.datetime | None = None
) -> HotlistEntry | None:
    """Restrict a card through the hotlist (限制使用) for a reason other than loss, e.g. ``credit_overdue``:
    terminals refuse it from their next hotlist; the card's state is untouched. None if already listed."""
    if not reason or len(reason) > 20:
        raise DomainError("a reason of 1–20 characters is required", field="reason")
    card = _card(card_no)
    entry = _hotlist_add(card.card_no, reason, at or timezone.now(), actor)
    if entry is not None:
        audit_record(
            action="hotlist.add",
            actor=actor,
            object_type="card",
            object_id=card_no,
            data={"reason": reason, "version": entry.version_added},
        )
    return entry


@transaction.atomic
def card_restriction_lift(*, card_no: str, reason: str, actor: str, at: dt.datetime | None = None) -> bool:
    """Lift a restriction ``card_restrict`` put: the card leaves the hotlist if it is listed for ``reason``
    (a listing for another reason, e.g. a loss report, stays). True if lifted."""
    at = at or timezone.now()
    entry = (
        HotlistEntry.objects.select_for_update()
        .filter(card_no=card_no, reason=reason, removed_at__isnull=True)
        .first()
    )
    if entry is None:
        return False
    entry.removed_at, entry.version_removed = at, _hotlist_bump(at)
    entry.save(update_fields=["removed_at", "version_removed"])
    audit_record(
        action="hotlist.remove",
        actor=actor,
        object_type="card",
        object_id=card_no,
        data={"reason": reason, "version": entry.version_removed},
    )
    return True


def card_loss_report_check(*, card: Card) -> None:
    """Refuse a loss report of an anonymous card (不记名: no holder to prove the loss), DomainError
    ``anonymous_card``. ``card_report_lost`` asks it; a caller may ask it first (before checking an ID)."""
    if card.cardholder_id is None:
        raise DomainError(
            gettext("card %(card_no)s is anonymous (不记名): it cannot be reported lost")
            % {"card_no": card.card_no},
            code="anonymous_card",
            field="card_no",
        )


@transaction.atomic
def card_report_lost(
    *, card_no: str, actor: str, reason: str = "lost", at: dt.datetime | None = None
) -> Card:
    """Loss report (挂失): the card is frozen and goes on the hotlist effective ``at`` (default now).

    Only a registered card: an anonymous card (不记名) has no holder to prove the loss, so it is refused
    (``anonymous_card``) whoever asks — officer, command line or partner app."""
    if reason not in {"lost", "stolen"}:
        raise DomainError(gettext("a loss report's reason is lost or stolen"), field="reason")
    at = at or timezone.now()
    card = _transition(
        card_no,
        "report lost",
        [CardState.ACTIVE],
        CardState.FROZEN,
        "frozen_at",
        actor,
        at,
        refuse=card_loss_report_check,
        reason=reason,
    )
    entry = _hotlist_add(card_no, reason, at, actor)
    audit_record(
        action="hotlist.add",
        actor=actor,
        object_type="card",
        object_id=card_no,
        data={"reason": reason, "version": entry.version_added if entry else None, "listed_at": at},
    )
    return card


@transaction.atomic
def card_report_lost_once(
    *, card_no: str, actor: str, reason: str = "lost", at: dt.datetime | None = None
) -> tuple[Card, bool]:
    """A loss report that a retry cannot repeat: (the card, True) when this call froze it; (the card, False)
    when it is already frozen and on the hotlist by the same ``actor`` (the earlier report stands, its time
    unchanged). A card frozen by someone else, or in any other state, is refused as by card_report_lost."""
    card = _card(card_no)
    if card.state == CardState.FROZEN:
        earlier = HotlistEntry.objects.filter(card_no=card_no, removed_at__isnull=True).first()
        if earlier is not None and earlier.actor == actor:
            return card, False
    return card_report_lost(card_no=card_no, actor=actor, reason=reason, at=at), True


@transaction.atomic
def card_unfreeze(*, card_no: str, actor: str, at: dt.datetime | None = None) -> Card:
    """Cancel a loss report (解挂): the card is active again and leaves the hotlist."""
    at = at or timezone.now()
    card = _card(card_no)
    _require(card, "unfreeze", [CardState.FROZEN])
    card.state, card.frozen_at = CardState.ACTIVE, None
    card.save(update_fields=["state", "frozen_at"])
    _audit_card(card, "unfreeze", actor)
    entry = HotlistEntry.objects.select_for_update().filter(card_no=card_no, removed_at__isnull=True).first()
    if entry is not None:
        entry.removed_at, entry.version_removed = at, _hotlist_bump(at)
        entry.save(update_fields=["removed_at", "version_removed"])
        audit_record(
            action="hotlist.remove",
            actor=actor,
            object_type="card",
            object_id=card_no,
            data={"version": entry.version_removed},
        )
    return card


@transaction.atomic
def card_replace(*, card_no: str, actor: str, at: dt.datetime | None = None) -> Card:
    """Replacement (补换卡): the old card ends (and stays on / goes on the hotlist), a new card of the same
    scheme is issued to the same cardholder, and the e-purse shadow balance and the online account move
    to it. Returns the new card."""
    at = at or timezone.now()
    old = _card(card_no)
    _require(old, "replace", [CardState.ACTIVE, CardState.FROZEN])
    if old.scheme.virtual:
        raise DomainError(gettext("an electronic citizen code is re-issued, not replaced"), field="card_no")
    was = old.state
    old.state, old.closed_at = CardState.REPLACED, at
    old.save(update_fields=["state", "closed_at"])
    _hotlist_add(card_no, "replaced", at, actor)
    serial = serials_take(scheme=old.scheme, count=1)
    new = Card.objects.create(
        card_no=card_number_build(division=card_no[:6], scheme=old.scheme.code, serial=serial),
        scheme=old.scheme,
        cardholder=old.cardholder,
        is_main=old.is_main,
        state=CardState.ISSUED,
        applied_at=at,
        produced_at=at,
        issued_at=at,
        expires_on=old.expires_on,
        fee_fen=old.scheme.replacement_fee_fen,
        replaces=old,
        source=f"replaces:{card_no}",
        ss_activated_at=None,
    )
    # The apps above cards follow the card (accounts: the e-purse shadow and the online account).
    moved: dict[str, Any] = {}
    for _receiver, answer in card_replaced.send(
        sender=Card, old_card_no=old.card_no, new_card_no=new.card_no, actor=actor, at=at
    ):
        moved.update(answer or {})
    _audit_card(old, "replace", actor, previous_state=was, new_card=new.card_no, **moved)
    _audit_card(new, "issue", actor, replaces=old.card_no)
    return new


@transaction.atomic
def card_cancel(*, card_no: str, actor: str, reason: str = "", at: dt.datetime | None = None) -> Card:
    """Cancellation (注销): from any live state; an issued or used card goes on the hotlist."""
    at = at or timezone.now()
    card = _card(card_no)
    _require(card, "cancel", LIVE_STATES)
    was = card.state
    card.state, card.closed_at = CardState.CANCELLED, at
    card.save(update_fields=["state", "closed_at"])
    if was in (CardState.ISSUED, CardState.ACTIVE):
        _hotlist_add(card_no, "cancelled", at, actor)
    _audit_card(card, "cancel", actor, previous_state=was, reason=reason)
    return card


@transaction.atomic
def card_issue_now(
    *,
    scheme_code: str,
    cardholder_id: int | None,
    actor: str,
    source: str = "",
    activate: bool = True,
    at: dt.datetime | None = None,
) -> Card:
    """Apply, produce, issue (and activate) in one go, as an instant-issuance window does (即时制卡)."""
    card = card_apply(scheme_code=scheme_code, cardholder_id=cardholder_id, source=source, actor=actor, at=at)
    card_produce(card_no=card.card_no, actor=actor, at=at)
    card = card_issue(card_no=card.card_no, actor=actor, at=at)
    if activate:
        card = card_activate(card_no=card.card_no, actor=actor, at=at)
    return card


__all__ = [
    "card_activate",
    "card_apply",
    "card_cancel",
    "card_issue",
    "card_issue_now",
    "card_loss_report_check",
    "card_produce",
    "card_replace",
    "card_report_lost",
    "card_report_lost_once",
    "card_restrict",
    "card_restriction_lift",
    "card_ss_activate",
    "card_unfreeze",
    "cardholder_category_grant",
    "cardholder_pii_reencrypt",
    "cardholder_register",
    "hotlist_publish",
    "scheme_save",
    "schemes_publish",
    "schemes_seed",
]


def cardholder_verify_attempt(*, card_no: str, id_number: str, now: dt.datetime | None = None) -> bool:
    """实名核验 bounded against guessing: whether ``card_no`` is held by the person with ``id_number``
    (``selectors.cardholder_verify``), with at most ``ID_VERIFY_MAX_FAILURES`` failed attempts per card
    per fixed window of ``ID_VERIFY_WINDOW_S``, counted in the database (every web process shares them;
    an unknown card counts like a known one). Once they are used up, every attempt on the card, right or
    wrong, is refused (DomainError ``too_many_attempts``) without comparing, until the window ends. A
    malformed ID number is refused before anything is counted (it says nothing about the holder).

    The failure is counted on the caller's connection: call it outside a transaction that a failed
    attempt rolls back (the GraphQL query runs in autocommit; the loss report answers a mismatch as data,
    so its transaction commits)."""
    now = now or timezone.now()
    bucket = f"id-verify:{connection.schema_name}:{card_no}"
    window_s, most = settings.ID_VERIFY_WINDOW_S, settings.ID_VERIFY_MAX_FAILURES
    if rate_limit_count(bucket=bucket, window_s=window_s, now=now) >= most:
        raise DomainError(
            gettext(
                "card %(card_no)s has had %(most)s failed ID checks in this %(window_s)s s window; try again later"
            )
            % {"card_no": card_no, "most": most, "window_s": window_s},
            code="too_many_attempts",
            field="id_number",
        )
    matches = cardholder_verify(card_no=card_no, id_number=id_number)
    if not matches:
        rate_limit_hit(bucket=bucket, limit=most, window_s=window_s, now=now)
    return matches


# --- test cards ---------------------------------------------------------------------------------------


@transaction.atomic
def card_test_keys_export(*, actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """The keys the issuer's test cards are personalised with (测试卡密钥), as the JSON document
    ``citycard-terminal simulate --issuer-keys`` reads: the development purchase, load and maintenance
    masters the simulator's PSAMs hold, and this issuer's card TAC master from the key vault, so the test
    cards' TACs verify at acquirers and in clearing like real ones. A city only; refused when the platform
    runs in production (its cards are not under development keys there); audited (the key ids, never a key)."""
    tenant = current_tenant()
    county_refuse(tenant, cannot=gettext("export test-card keys"), **_CARDS_INHERITED)
    if settings.PRODUCTION:
        raise DomainError(
            gettext(
                "test-card keys are not exported in production (CITYCARD_PRODUCTION is on): a "
                "deployment's cards are personalised under its own keys, not the development ones"
            ),
            code="production",
        )
    divisions = [tenant.division_code, *tenant.counties.values_list("division_code", flat=True)]
    keys = replace(SIM_KEYS, tac_master=tenant_card_tac_master(tenant=tenant))
    document = issuer_keys_document(
        issuer=tenant.code, divisions=divisions, keys=keys, exported_at=now or timezone.now()
    )
    audit_record(
        action="card.test_keys_export",
        actor=actor,
        object_type="card_keys",
        object_id=tenant.code,
        data={
            "divisions": sorted(divisions),
            "kcv": {k: v["kcv"] for k, v in document.items() if isinstance(v, dict)},
        },
    )
    return document

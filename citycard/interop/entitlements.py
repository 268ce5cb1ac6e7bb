"""Entitlements across cities (权益互认): a visitor's card or citizen code at a service point, answered from
the home tenant's signed entitlements through signed envelopes — never by reading another tenant's schema.

A county's own departments define their own types; it accepts its city's (whose cardholders live in the
city's schema) by a type of the same code at its service points, answered by the city the same way.
A roaming network lists the entitlement types its members recognise for each other's cardholders
(``EntitlementRecognition``, set with ``entitlement_recognition_set``). ``acceptance_decide_anywhere`` answers
a service point for any card or code: its own tenant's (``tenants.entitlements.acceptance``), or a
visitor's, by the three steps of ``tenants.entitlements.roaming`` each run in its own tenant's schema, with
only the envelopes passing between them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import tenant_context

from citycard.interop.models import EntitlementRecognition
from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.models import RoamingNetwork, Tenant, TenantKind
from citycard.platform.selectors import networks_shared
from citycard.tenants.entitlements import roaming
from citycard.tenants.entitlements.acceptance import (
    Decision,
    _NonceMemory,
    acceptance_decide,
    citizen_code_claimed_tenant,
    code_issuer,
    terminal_check_open,
    terminal_decision_document,
)
from citycard.tenants.entitlements.models import EntitlementType, TypeStatus
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.ecode import CodeRefused, EcodeVerifier

_CODE_REASONS = {"expired": "code_expired", "replayed": "code_replayed"}


@transaction.atomic
def entitlement_recognition_set(
    *, network_code: str, type_codes: Iterable[str], valid_from: dt.date, actor: str, note: str = ""
) -> list[str]:
    """The types a network's members recognise for each other's cardholders (e.g. yrd: elderly-free-entry);
    types not listed stop being recognised. Audited; returns the codes."""
    network = RoamingNetwork.objects.filter(code=network_code).first()
    if network is None:
        raise NotFound(_("no roaming network %(code)r") % {"code": network_code}, field="network")
    codes = sorted(set(type_codes))
    EntitlementRecognition.objects.filter(network=network).exclude(type_code__in=codes).delete()
    for code in codes:
        EntitlementRecognition.objects.update_or_create(
            network=network,
            type_code=code,
            defaults={
                "valid_from": valid_from,
                "note": note,
                "created_at": timezone.now(),
                "created_by": actor,
            },
        )
    audit_record(
        action="entitlement_recognition.set",
        actor=actor,
        object_type="network",
        object_id=network_code,
        data={"types": codes, "valid_from": valid_from},
    )
    return codes


def recognised_types(*, acquirer: Tenant, home: Tenant, on: dt.date) -> set[str]:
    """Types recognised between the two cities: in force in a network both are members of on ``on``."""
    common = networks_shared(a=acquirer, b=home, on=on)
    return set(
        EntitlementRecognition.objects.filter(network__in=common, valid_from__lte=on).values_list(
            "type_code", flat=True
        )
    )


def _home_of(card_no: str) -> Tenant | None:
    home = Tenant.objects.filter(division_code=card_no[:6]).first()
    return None if home is None else home.clearing_tenant


def acceptance_decide_anywhere(
    *,
    service_point: str,
    card_no: str | None = None,
    code: str | None = None,
    at: dt.datetime | None = None,
    reader: str,
    use_key: str | None = None,
) -> Decision:
    """Answer a service point of the current tenant for its own cardholders and for visitors alike."""
    at = at or timezone.now()
    acquirer = connection.tenant
    channel = "card"
    if code is not None:
        claimed = citizen_code_claimed_tenant(code)
        home = Tenant.objects.filter(code=claimed).first() if claimed else None
        if home is None or home.pk == acquirer.pk:
            return acceptance_decide(
                service_point=service_point, code=code, at=at, reader=reader, use_key=use_key
            )
        # A visitor's code: verified here with its home tenant's public keys, its nonce spent here.
        channel = "code"
        verifier = EcodeVerifier(
            issuers=[code_issuer(home, at=at)], store=_NonceMemory(), clock=lambda: at.timestamp()
        )
        try:
            card_no = verifier.verify(code)["card_no"]
        except CodeRefused as exc:
            return Decision(False, _CODE_REASONS.get(exc.code, "code_invalid"))
    if card_no is None:
        raise DomainError(_("give a card number or a citizen code"), field="card_no")
    home = _home_of(card_no)
    if channel == "card" and (home is None or home.pk == acquirer.pk):
        return acceptance_decide(
            service_point=service_point, card_no=card_no, at=at, reader=reader, use_key=use_key
        )
    if home is None:
        return Decision(False, "unknown_card", card_no)
    local = roaming.local_types_at(service_point=service_point, at=at)
    if acquirer.parent_id == home.pk:
        # A county accepts its city's types by defining one of the same code at its own service points;
        # its city's cardholders live in the city's schema, asked like any home tenant.
        recognised = sorted(local)
    else:
        recognised = sorted(
            set(local) & recognised_types(acquirer=acquirer, home=home, on=at.astimezone(BEIJING).date())
        )
    if not recognised:
        return Decision(False, "not_entitled", card_no, home_tenant=home.code)
    query = roaming.visitor_query_seal(
        home=home, card_no=card_no, types=recognised, service_point=service_point, at=at
    )
    answer = _ask_home(home, query)
    return roaming.visitor_decide(
        service_point=service_point,
        query=query,
        answer=answer,
        recognised=recognised,
        channel=channel,
        at=at,
        use_key=use_key,
    )


def _ask_home(home: Tenant, query: dict[str, Any]) -> dict[str, Any]:
    """Deliver the query to the home tenant and bring back its signed answer (the home's own service, run
    in its own schema; the acquirer's schema is restored after)."""
    with tenant_context(home):
        return roaming.visitor_query_answer(document=query, now=timezone.now())


def _local_types() -> set[str]:
    """Approved types of the current tenant accepted at one of its service points."""
    return set(
        EntitlementType.objects.filter(status=TypeStatus.APPROVED)
        .exclude(service_points=[])
        .values_list("code", flat=True)
    )


def visitor_lists_sync(*, acquirer: Tenant, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Bring ``acquirer``'s offline list up to date with the visitors' entitlements its service points
    recognise (异地权益名单), so a gate decides a visitor's card or code offline like a local one: for each
    city sharing a roaming network with it (and, for a county, its own city), the recognised types that
    are also approved here; the home seals its rows of those types (full, or the delta on the version held)
    in its own schema, the acquirer opens and takes them in its own. Only the envelope passes between the
    two. Returns one summary per home."""
    at = at or timezone.now()
    day = at.astimezone(BEIJING).date()
    # The homes are the cities: a county registers no cardholders and issues no cards (county_read_only),
    # its residents hold their city's cards, vouched for in the city's list (a county's card division
    # resolves to its city too: ``_home_of``). A county is a host like a city, through its city's networks.
    homes = Tenant.objects.filter(kind=TenantKind.CITY).exclude(pk=acquirer.pk).order_by("code")
    out = []
    with tenant_context(acquirer):
        local = _local_types()
    for home in homes:
        if not home.is_active:
            continue
        if acquirer.parent_id == home.pk:
            types = sorted(local)
        else:
            types = sorted(local & recognised_types(acquirer=acquirer, home=home, on=day))
        with tenant_context(acquirer):
            held_version, held_types = roaming.visitor_list_held(home=home.code)
            if not types:
                if held_version is not None:
                    gone = roaming.visitor_list_drop(home=home.code, now=at)
                    out.append({"home": home.code, "version": None, "added": 0, "removed": gone})
                continue
        since = held_version if held_types == types else None
        with tenant_context(home):
            document = roaming.visitor_list_seal(acquirer=acquirer.code, types=types, since=since, now=at)
        with tenant_context(acquirer):
            out.append(roaming.visitor_list_take(document=document, home=home.code, types=types, now=at))
    return out


def acceptance_terminal_check(*, document: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """A service point's terminal asks online, signing its request with its key (核验请求): opened and checked
    (``terminal_check_open``), decided for the tenant's own cardholders and visitors alike
    (``acceptance_decide_anywhere``: the use recorded once per terminal use key), answered tenant-signed.
    DomainError when the request is refused."""
    now = now or timezone.now()
    check = terminal_check_open(document=document, now=now)
    decision = acceptance_decide_anywhere(
        service_point=check.service_point,
        card_no=check.card_no,
        code=check.code,
        at=check.at,
        reader=f"terminal:{check.terminal_id}",
        use_key=check.use_key,
    )
    return terminal_decision_document(check=check, decision=decision)

"""The entitlements part of the demo (权益): a Hangzhou library and park, a student's canteen meal, and a
Jiaxing elderly visitor entering a Hangzhou park with the card and with the citizen code, answered from
Jiaxing's signed entitlements. Safe to run again: what exists is kept, and each run adds today's uses."""

from __future__ import annotations

import datetime as dt
import secrets

from django.utils.translation import gettext, pgettext
from django_tenants.utils import tenant_context
from rich.table import Table

from citycard.interop.entitlements import (
    acceptance_decide_anywhere,
    entitlement_recognition_set,
    visitor_lists_sync,
)
from citycard.platform.keys import tenant_public_keys
from citycard.platform.models import Tenant
from citycard.tenants.accounts.services import account_open, account_topup
from citycard.tenants.cards.models import Card, CardScheme
from citycard.tenants.cards.pii import id_number_build
from citycard.tenants.cards.selectors import cardholder_by_id_number
from citycard.tenants.cards.services import card_issue_now, cardholder_register, schemes_seed
from citycard.tenants.departments.models import Department, ServicePoint
from citycard.tenants.departments.services import data_grant_create, department_create, service_point_create
from citycard.tenants.entitlements import services
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.entitlements.models import Entitlement, EntitlementType
from citycard.tenants.entitlements.selectors import entitlement_list_document
from citycard.tenants.entitlements.services import approver_role
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.entitlements import EntitlementList

ACTOR = "demo"


def _point(department: tuple[str, str, str], code: str, name: str, address: str) -> None:
    dept_code, kind, dept_name = department
    if not Department.objects.filter(code=dept_code).exists():
        department_create(code=dept_code, kind=kind, name=dept_name, actor=ACTOR)
        data_grant_create(
            department=dept_code,
            fields=["name"],
            purpose="权益核验 (masked name only)",
            valid_from=dt.date(2024, 1, 1),
            actor=ACTOR,
        )
    if not ServicePoint.objects.filter(code=code).exists():
        service_point_create(
            department=dept_code,
            code=code,
            name=name,
            address=address,
            hours="8:00-21:00",
            services=["entry"],
            actor=ACTOR,
        )


def _type(code: str, **fields) -> None:
    if not EntitlementType.objects.filter(code=code).exists():
        services.entitlement_type_create(role=approver_role(), code=code, actor=ACTOR, **fields)
    services.entitlement_type_approve(code=code, actor="city-admin", role=approver_role())


def _person(division: str, birth: dt.date, sequence: int, name: str, **kwargs):
    """A cardholder with an active main card (found again on a re-run)."""
    id_number = id_number_build(division=division, birth_date=birth, sequence=sequence)
    holder = cardholder_by_id_number(id_number=id_number)
    if holder is None:
        holder = cardholder_register(name=name, id_number=id_number, local_hukou=True, actor=ACTOR, **kwargs)
    card = Card.objects.filter(cardholder=holder, state="active").first()
    if card is None:
        card = card_issue_now(scheme_code="01", cardholder_id=holder.pk, actor=ACTOR)
    return holder, card


def _answer(allowed: bool) -> str:
    return pgettext("entitlement check", "YES") if allowed else pgettext("entitlement check", "no")


def _seed_schemes() -> None:
    if not CardScheme.objects.exists():
        schemes_seed(actor=ACTOR)


def entitlements_demo(ctx) -> None:
    hangzhou, jiaxing = Tenant.objects.get(code="hangzhou"), Tenant.objects.get(code="jiaxing")
    elderly = [{"code": "elderly", "valid_from": dt.date(2010, 6, 1)}]
    with tenant_context(jiaxing):
        _seed_schemes()
        if not Department.objects.filter(code="jx-parks").exists():
            department_create(code="jx-parks", kind="culture_tourism", name="嘉兴市园林局", actor=ACTOR)
        _type(
            "elderly-free-entry",
            name="老年人免费游园",
            department="jx-parks",
            categories=["elderly"],
            auto_grant=True,
        )
        _, jx_card = _person("330402", dt.date(1950, 5, 1), 901, "沈阿婆", categories=elderly)
    with tenant_context(hangzhou):
        _seed_schemes()
        parks = ("hz-parks", "culture_tourism", "杭州市园林文物局")
        _point(parks, "west-lake-gate", "西湖景区北山街入口", "北山街")
        _point(
            ("hz-library", "culture_tourism", "杭州图书馆"),
            "hz-library-desk",
            "杭州图书馆总服务台",
            "解放东路58号",
        )
        _point(("hz-school-14", "education", "杭州第十四中学"), "hz14-canteen", "杭十四中食堂", "凤起路")
        _type(
            "library-borrow",
            name="图书借阅",
            department="hz-library",
            residence=["local_hukou"],
            service_points=["hz-library-desk"],
            quota_period="day",
            quota=20,
            auto_grant=True,
        )
        _type(
            "park-pass",
            name="西湖公园年卡",
            department="hz-parks",
            service_points=["west-lake-gate"],
            price_fen=20000,
            period_days=365,
            quota_period="day",
            quota=2,
        )
        _type(
            "elderly-free-entry",
            name="老年人免费游园",
            department="hz-parks",
            categories=["elderly"],
            service_points=["west-lake-gate"],
            auto_grant=True,
        )
        _type(
            "canteen-meal",
            name="学生食堂餐补",
            department="hz-school-14",
            categories=["student"],
            service_points=["hz14-canteen"],
            quota_period="day",
            quota=3,
        )
        resident, resident_card = _person("330106", dt.date(1986, 4, 12), 902, "周建国")
        student, student_card = _person(
            "330106",
            dt.date(2010, 9, 3),
            903,
            "林小雨",
            categories=[{"code": "student", "valid_from": dt.date(2023, 9, 1)}],
        )
        services.entitlement_grant_batch(
            type="canteen-meal",
            cardholder_ids=[student.pk],
            actor="hz-school-14",
            role="department_officer",
            role_department="hz-school-14",
        )
        if not Entitlement.objects.filter(
            cardholder_id=resident.pk, type__code="park-pass", revoked_at__isnull=True
        ).exists():
            account_open(card_no=resident_card.card_no, actor=ACTOR)
            account_topup(
                card_no=resident_card.card_no,
                amount_fen=30000,
                idempotency_key=f"demo-top-{secrets.token_hex(4)}",
                actor=ACTOR,
            )
            services.entitlement_buy(
                type="park-pass",
                card_no=resident_card.card_no,
                idempotency_key=f"demo-buy-{resident.pk}",
                actor="partner-app",
            )
    entitlement_recognition_set(
        network_code="yrd",
        type_codes=["elderly-free-entry"],
        valid_from=dt.date(2024, 1, 1),
        actor="yrd-operator",
    )
    with tenant_context(jiaxing):
        code = citizen_code_issue(card_no=jx_card.card_no)
    resident_name, student_name, visitor_name = {"name": "周建国"}, {"name": "林小雨"}, {"name": "沈阿婆"}
    asks = [
        (
            gettext("%(name)s at the library (card)") % resident_name,
            "hz-library-desk",
            {"card_no": resident_card.card_no},
        ),
        (
            gettext("%(name)s at West Lake, annual pass bought in the app (card)") % resident_name,
            "west-lake-gate",
            {"card_no": resident_card.card_no},
        ),
        (
            gettext("%(name)s's canteen meal (card)") % student_name,
            "hz14-canteen",
            {"card_no": student_card.card_no},
        ),
        (
            gettext("%(name)s at West Lake (card)") % student_name,
            "west-lake-gate",
            {"card_no": student_card.card_no},
        ),
        (
            gettext("Jiaxing's %(name)s at West Lake (card)") % visitor_name,
            "west-lake-gate",
            {"card_no": jx_card.card_no},
        ),
        (
            gettext("Jiaxing's %(name)s at West Lake (citizen code)") % visitor_name,
            "west-lake-gate",
            {"code": code},
        ),
        (gettext("the same code shown again"), "west-lake-gate", {"code": code}),
    ]
    table = Table(
        gettext("who, where"),
        pgettext("entitlement check", "answer"),
        gettext("reason code"),
        gettext("name shown"),
        gettext("entitlement"),
        gettext("home city"),
        title=gettext("Entitlement checks at Hangzhou's service points"),
    )
    with tenant_context(hangzhou):
        for label, point, what in asks:
            d = acceptance_decide_anywhere(service_point=point, reader="demo-gate", **what)
            table.add_row(
                label,
                _answer(d.allowed),
                d.reason,
                d.masked_name,
                d.type_code,
                d.home_tenant or "hangzhou",
            )
    # The same gate offline: Jiaxing's recognised entitlements taken into Hangzhou's signed list (异地权益名单).
    visitor_lists_sync(acquirer=hangzhou)
    with tenant_context(hangzhou):
        held = EntitlementList().apply(entitlement_list_document(), keys=tenant_public_keys(tenant=hangzhou))
    offline = held.decide(
        card_no=jx_card.card_no, service_point="west-lake-gate", day=dt.datetime.now(BEIJING).date()
    )
    table.add_row(
        gettext("Jiaxing's %(name)s at West Lake, gate offline (card, from the visitors' list)")
        % visitor_name,
        _answer(offline.allowed),
        offline.reason,
        "",
        offline.type_code,
        "jiaxing",
    )
    ctx.console.print(table)
    ctx.console.print(
        gettext(
            "Entitlements (%(doc)s): %(command)s; %(path)s on %(site)s; partner apps: %(api)s "
            "(scope %(scope)s)."
        )
        % {
            "doc": "docs/entitlements.md",
            "command": "`citycard entitlements --tenant hangzhou types`",
            "path": "/admin/entitlements/",
            "site": "http://hangzhou.localhost:8000/",
            "api": "cardEntitlements, entitlementBuy, acceptanceCheck",
            "scope": "service_points:accept",
        }
    )

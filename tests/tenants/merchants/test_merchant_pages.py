"""The site's merchant settlement page and statements: the city's own users read its settlements in yuan
and a statement as CSV in fen; anonymous visitors and another city's users get nothing. The command
settles and prints the same statement."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.platform.errors import DomainError
from citycard.platform.services import user_create
from citycard.tenants.accounts import services as a
from citycard.tenants.cards import services as cards
from citycard.tenants.merchants import services as m
from citycard.terminal_kit.beijing import BEIJING

from ..conftest import new_id

pytestmark = pytest.mark.django_db
JX = {"HTTP_HOST": "jiaxing.localhost"}
YESTERDAY = timezone.now().astimezone(BEIJING).date() - dt.timedelta(days=1)


@pytest.fixture
def settled(tenant):
    from citycard.tenants.cards.services import cardholder_register, schemes_seed

    jiaxing = tenant("jiaxing")
    with tenant_context(jiaxing):
        schemes_seed(actor="t")
        holder = cardholder_register(name="李四", id_number=new_id(), local_hukou=True, actor="t")
        card = cards.card_issue_now(scheme_code="01", cardholder_id=holder.pk, actor="t").card_no
        a.account_open(card_no=card, actor="t")
        a.account_topup(card_no=card, amount_fen=5000, idempotency_key="t1", actor="t")
        m.merchant_onboard(
            code="jx-canteen",
            name="嘉兴学院食堂",
            licence_no=m.licence_no_build(division="330400", organisation="MA0000009"),
            category="5814",
            settlement_bank="嘉兴银行",
            settlement_account="6222020000123456789",
            fee_bps=60,
            accepted_means=["account"],
            actor="t",
        )
        when = dt.datetime.combine(YESTERDAY, dt.time(12), tzinfo=BEIJING)
        m.merchant_pay(
            merchant_code="jx-canteen", card_no=card, amount_fen=1350, payment_id="meal-1", at=when, actor="t"
        )
        out = io.StringIO()
        call_command("merchants", "--tenant", "jiaxing", "settle", "--day", YESTERDAY.isoformat(), stdout=out)
        assert "¥13.42" in out.getvalue()  # 13.50 less 0.08
        out = io.StringIO()
        call_command(
            "merchants",
            "--tenant",
            "jiaxing",
            "statement",
            "jx-canteen",
            "--day",
            YESTERDAY.isoformat(),
            "--csv",
            stdout=out,
        )
        assert out.getvalue().splitlines()[-1] == "total,net_fen,,,,,1342"
    return card


def test_the_city_reads_its_settlement_and_statements(settled):
    client = Client()
    client.force_login(
        user_create(
            username="jx-admin-m", role="city_admin", tenant_code="jiaxing", password="a-long-password-1"
        )
    )
    html = client.get(f"/merchants/settlement/?day={YESTERDAY}", **JX).content.decode()
    assert "嘉兴学院食堂" in html and "¥13.50" in html and "¥13.42" in html
    page = client.get(f"/merchants/settlement/jx-canteen/{YESTERDAY}/", **JX).content.decode()
    assert "meal-1" in page and "**** **** **** 6789" in page and settled not in page
    csv = client.get(f"/merchants/settlement/jx-canteen/{YESTERDAY}/?format=csv", **JX)
    assert csv["Content-Type"].startswith("text/csv") and b"1350" in csv.content
    assert Client().get("/merchants/settlement/", **JX).status_code == 302  # to the sign-in page
    other = Client()
    other.force_login(
        user_create(
            username="hz-admin-m", role="city_admin", tenant_code="hangzhou", password="a-long-password-1"
        )
    )
    assert other.get(f"/merchants/settlement/?day={YESTERDAY}", **JX).status_code in (302, 403)


def test_the_admin_onboards_through_the_service_and_suspends(settled, tenant):
    from citycard.tenants.merchants.models import Merchant

    client = Client()
    client.force_login(
        user_create(
            username="jx-admin-a", role="city_admin", tenant_code="jiaxing", password="a-long-password-1"
        )
    )
    form = {
        "code": "jx-parking",
        "name": "南湖停车场",
        "licence_no": m.licence_no_build(division="330400", organisation="MA0000010"),
        "category": "7523",
        "department": "",
        "settlement_bank": "嘉兴银行",
        "fee_bps": "60",
        "settlement_account": "6222 0200 0012 3456 780",
        "accepted_means": ["account", "code"],
    }
    response = client.post("/admin/merchants/merchant/add/", form, **JX)
    assert response.status_code == 302, response.content.decode()[:2000]
    bad = client.post(
        "/admin/merchants/merchant/add/", {**form, "code": "jx-bad", "licence_no": "91330400MA00000100"}, **JX
    )
    assert bad.status_code in (200, 302)
    with tenant_context(tenant("jiaxing")):
        merchant = Merchant.objects.get(code="jx-parking")
        assert not Merchant.objects.filter(code="jx-bad").exists()
    page = client.get(f"/admin/merchants/merchant/{merchant.pk}/change/", **JX).content.decode()
    assert "62220200001234567" not in page and "**** **** **** 6780" in page
    client.post(
        "/admin/merchants/merchant/",
        {"action": "suspend_selected", "_selected_action": [merchant.pk]},
        **JX,
    )
    with tenant_context(tenant("jiaxing")):
        assert Merchant.objects.get(code="jx-parking").state == "suspended"
    for model in ("merchantterminal", "payment", "refund", "settlement"):
        assert client.get(f"/admin/merchants/{model}/", **JX).status_code == 200, model


def test_the_payout_file_of_a_settlement_run(settled, tenant, tmp_path):
    """The bank's batch-transfer file: header, one detail line per merchant paid (account in clear, amount
    in fen, the settlement's reference), trailer with count, total and the SHA-256 of the lines before it;
    the same from the console and the command, byte for byte; refused to users who may not read
    settlements and for a day not settled."""
    import hashlib

    client = Client()
    client.force_login(
        user_create(
            username="jx-admin-p", role="city_admin", tenant_code="jiaxing", password="a-long-password-1"
        )
    )
    html = client.get(f"/merchants/settlement/?day={YESTERDAY}", **JX).content.decode()
    assert f"/merchants/settlement/payout/{YESTERDAY}/" in html
    response = client.get(f"/merchants/settlement/payout/{YESTERDAY}/", **JX)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    stamp = YESTERDAY.strftime("%Y%m%d")
    assert f'filename="payout-jiaxing-{stamp}.csv"' in response["Content-Disposition"]
    text = response.content.decode()
    lines = text.splitlines()
    assert lines[0] == f"H,CCPAYOUT1,jiaxing,{stamp},1,1342"
    assert (
        lines[1]
        == f"D,000001,jx-canteen,嘉兴学院食堂,嘉兴银行,6222020000123456789,1342,merchant-settle:jx-canteen:{YESTERDAY}"
    )
    body = "".join(line + "\n" for line in lines[:-1])
    assert lines[-1] == f"T,1,1342,{hashlib.sha256(body.encode()).hexdigest()}"
    out = tmp_path / "payout.csv"
    printed = io.StringIO()
    call_command(
        "merchants",
        "--tenant",
        "jiaxing",
        "payout-file",
        "--day",
        YESTERDAY.isoformat(),
        "--out",
        str(out),
        stdout=printed,
    )
    assert out.read_text(encoding="utf-8") == text  # the same settled day: the same bytes
    assert (
        client.get(f"/merchants/settlement/payout/{YESTERDAY - dt.timedelta(days=3)}/", **JX).status_code
        == 404
    )
    with tenant_context(tenant("jiaxing")):
        from citycard.platform.audit.models import AuditEntry

        assert AuditEntry.objects.filter(action="merchant.payout_file").count() == 2
    clerk = Client()
    clerk.force_login(
        user_create(
            username="jx-dept-p",
            role="department_officer",
            department="education",
            tenant_code="jiaxing",
            password="a-long-password-1",
        )
    )
    assert clerk.get(f"/merchants/settlement/payout/{YESTERDAY}/", **JX).status_code in (302, 403)


def test_a_department_officer_onboards_and_manages_its_own_departments_merchants(settled, tenant):
    """谁主管谁负责: the education bureau's officer onboards a school canteen for its own department through
    the tenant admin, sees and suspends only its department's merchants; another department's merchant (the
    city's canteen, a transport bureau's car park) is neither listed nor reachable, and onboarding for another
    department is refused with nothing written."""
    from citycard.tenants.departments import services as departments
    from citycard.tenants.merchants.models import Merchant

    with tenant_context(tenant("jiaxing")):
        for code, kind in (("jx-edu", "education"), ("jx-transport", "transport")):
            departments.department_create(code=code, kind=kind, name=code, actor="t")
        m.merchant_onboard(
            code="jx-bus-park",
            name="公交停车场",
            licence_no=m.licence_no_build(division="330400", organisation="MA0000021"),
            category="7523",
            settlement_bank="嘉兴银行",
            settlement_account="6222020000123456781",
            fee_bps=60,
            accepted_means=["account"],
            department="jx-transport",
            actor="t",
        )
    client = Client()
    client.force_login(
        user_create(
            username="jx-edu-officer",
            role="department_officer",
            department="jx-edu",
            tenant_code="jiaxing",
            password="a-long-password-1",
        )
    )
    form = {
        "code": "jx-school-canteen",
        "name": "嘉兴一中食堂",
        "licence_no": m.licence_no_build(division="330400", organisation="MA0000022"),
        "category": "5814",
        "department": "jx-edu",
        "settlement_bank": "嘉兴银行",
        "fee_bps": "30",
        "settlement_account": "6222 0200 0012 3456 782",
        "accepted_means": ["purse", "account"],
    }
    assert client.get("/admin/merchants/merchant/add/", **JX).status_code == 200
    response = client.post("/admin/merchants/merchant/add/", form, **JX)
    assert response.status_code == 302, response.content.decode()[:2000]
    refused = {
        **form,
        "code": "jx-other",
        "department": "jx-transport",
        "licence_no": m.licence_no_build(division="330400", organisation="MA0000023"),
    }
    client.post("/admin/merchants/merchant/add/", refused, **JX)
    with tenant_context(tenant("jiaxing")):
        assert Merchant.objects.get(code="jx-school-canteen").onboarded_by == "user:jx-edu-officer"
        assert not Merchant.objects.filter(code="jx-other").exists()
        own = Merchant.objects.get(code="jx-school-canteen")
        others = list(Merchant.objects.exclude(department="jx-edu").values_list("pk", flat=True))
    page = client.get("/admin/merchants/merchant/", **JX).content.decode()
    assert "jx-school-canteen" in page and "jx-bus-park" not in page and "jx-canteen" not in page
    for pk in others:
        assert client.get(f"/admin/merchants/merchant/{pk}/change/", **JX).status_code in (302, 404)
    client.post(
        "/admin/merchants/merchant/",
        {"action": "suspend_selected", "_selected_action": [own.pk, *others]},
        **JX,
    )
    with tenant_context(tenant("jiaxing")):
        assert Merchant.objects.get(pk=own.pk).state == "suspended"
        assert set(Merchant.objects.filter(pk__in=others).values_list("state", flat=True)) == {"active"}
        with pytest.raises(DomainError) as info:
            m.merchant_state_set(
                code="jx-bus-park",
                state="suspended",
                reason="x",
                actor="t",
                role="department_officer",
                role_department="jx-edu",
            )
        assert info.value.code == "other_department"

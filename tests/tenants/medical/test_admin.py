"""The medical roaming pages of a city's admin site: every form goes through its audited service (money in
yuan and ratios in percent on the page, fen and basis points in the data), claims are read only with
their per-line adjudication, a county officer sees none of it."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from citycard.platform.audit.models import AuditEntry
from citycard.platform.models import Role
from citycard.tenants.medical.models import CatalogueItem, ClosedYear, InsuredYear, Policy

from .conftest import DG, SZ, signed_in

pytestmark = pytest.mark.django_db


def audit(tenant, action: str) -> list[AuditEntry]:
    with tenant_context(tenant):
        return list(AuditEntry.objects.filter(action=action).order_by("seq"))


def test_a_catalogue_item_is_saved_through_the_service_in_fen(client, tenant):
    shenzhen = tenant("shenzhen")
    admin = signed_in(client, "shenzhen")
    form = {
        "code": "D100",
        "name": "布洛芬缓释胶囊",
        "category": "drug",
        "coverage": "B",
        "unit_price": "12.35",
        "self_pay": "10",
        "active": "on",
    }
    response = admin.post("/admin/medical/catalogueitem/add/", form, **SZ)
    assert response.status_code == 302, response.content.decode()
    with tenant_context(shenzhen):
        item = CatalogueItem.objects.get(code="D100")
    assert (item.unit_price_fen, item.self_pay_bps, item.coverage) == (1235, 1000, "B")
    [entry] = audit(shenzhen, "medical.catalogue_item_save")
    assert entry.actor == "user:shenzhen-city_admin" and '"unit_price_fen":1235' in entry.payload
    listing = admin.get("/admin/medical/catalogueitem/", **SZ).content.decode()
    assert "¥12.35" in listing and "10%" in listing
    # The service's rule on the form: a 甲类 item has no self-pay share. Nothing is written.
    response = admin.post(
        "/admin/medical/catalogueitem/add/", {**form, "code": "D101", "coverage": "A"}, **SZ
    )
    assert response.status_code == 200 and "只有乙类（B）项目有自付比例" in response.content.decode()
    with tenant_context(shenzhen):
        assert not CatalogueItem.objects.filter(code="D101").exists()


def test_catalogue_import_from_csv_lists_bad_rows_and_applies_the_good_ones(client, tenant):
    from django.core.files.uploadedfile import SimpleUploadedFile

    shenzhen = tenant("shenzhen")
    admin = signed_in(client, "shenzhen")
    text = (
        "code,name,category,unit_price_fen,class,self_pay_bps\n"
        "D001,阿莫西林,drug,1200,甲,\n"
        "D002,头孢,drug,5800,乙,1000\n"
        "M001,进口耗材,material,8000,丙,\n"
        "X001,bad price,drug,12.50,A,\n"
        "X002,bad class,drug,100,D,\n"
        "X003,self pay on A,drug,100,A,500\n"
        "D001,again,drug,1,A,\n"
    )
    upload = SimpleUploadedFile("szyb-2026.csv", text.encode("utf-8-sig"), content_type="text/csv")
    page = admin.post("/admin/medical/catalogueitem/import/", {"file": upload}, **SZ).content.decode()
    assert "7 行：新增 3 项，修改 0 项，未变 0 项；4 行有误" in page
    for line, reason in (
        (5, "unit_price_fen &#x27;12.50&#x27; 不是整数"),
        (6, "类别 &#x27;D&#x27; 不是 A/B/C"),
        (7, "只有乙类（B）项目有自付比例"),
        (8, "code D001 repeats line 2"),
    ):
        assert f"<td>{line}</td><td>{reason}" in page, (line, page)
    with tenant_context(shenzhen):
        assert sorted(CatalogueItem.objects.values_list("code", "coverage", "self_pay_bps")) == [
            ("D001", "A", 0),
            ("D002", "B", 1000),
            ("M001", "C", 0),
        ]
    [entry] = audit(shenzhen, "medical.catalogue_import")
    assert entry.object_id == "szyb-2026.csv" and entry.actor == "user:shenzhen-city_admin"
    # The export reads back in unchanged.
    exported = admin.get("/admin/medical/catalogueitem/export.csv", **SZ).content
    again = SimpleUploadedFile("export.csv", exported, content_type="text/csv")
    page = admin.post("/admin/medical/catalogueitem/import/", {"file": again}, **SZ).content.decode()
    assert "3 行：新增 0 项，修改 0 项，未变 3 项；0 行有误" in page


def test_a_policy_is_set_through_the_service_and_an_overlap_is_refused_on_the_form(client, tenant):
    dongguan = tenant("dongguan")
    admin = signed_in(client, "dongguan")
    form = {
        "category": "employee",
        "year": "2026",
        "effective_from": "",
        "effective_to": "2026-06-30",
        "deductible": "500.00",
        "annual_cap": "100000",
        "ratio_drug": "80",
        "ratio_treatment": "90.5",
    }
    response = admin.post("/admin/medical/policy/add/", form, **DG)
    assert response.status_code == 302, response.content.decode()
    with tenant_context(dongguan):
        policy = Policy.objects.get(category="employee", year=2026)
    assert (str(policy.effective_from), str(policy.effective_to)) == ("2026-01-01", "2026-06-30")
    assert (policy.deductible_fen, policy.annual_cap_fen) == (50000, 10_000_000)
    assert policy.ratios_bps == {"drug": 8000, "treatment": 9050}
    [entry] = audit(dongguan, "medical.policy_set")
    assert entry.actor == "user:dongguan-city_admin"
    listing = admin.get("/admin/medical/policy/", **DG).content.decode()
    assert "¥500.00" in listing and "¥100,000.00" in listing and "90.5%" in listing
    response = admin.post("/admin/medical/policy/add/", {**form, "effective_from": "2026-06-01"}, **DG)
    assert response.status_code == 200 and "重叠" in response.content.decode()
    # Changing it: the service's audit entry keeps what it was.
    response = admin.post(
        f"/admin/medical/policy/{policy.pk}/change/", {**form, "effective_to": "2026-12-31"}, **DG
    )
    assert response.status_code == 302
    assert '"effective_to":"2026-06-30"' in audit(dongguan, "medical.policy_set")[-1].payload


def test_claims_are_read_only_with_each_lines_outcome_on_both_sides(client, tenant, world):
    shenzhen, dongguan, card = world
    sz = signed_in(client, "shenzhen")
    listing = sz.get("/admin/medical/claim/", **SZ).content.decode()
    assert "shenzhen-W1" in listing and "¥450.00" in listing and "¥286.00" in listing and "¥164.00" in listing
    with tenant_context(shenzhen):
        from citycard.tenants.medical.models import Claim

        claim = Claim.objects.get(claim_id="shenzhen-W1")
    page = sz.get(f"/admin/medical/claim/{claim.pk}/change/", **SZ).content.decode()
    assert "目录外：自费" in page and "甲类：全额纳入" in page and "已审核" in page
    assert 'name="_save"' not in page  # read only
    response = sz.post(f"/admin/medical/claim/{claim.pk}/change/", {"department": "x"}, **SZ)
    assert response.status_code == 403
    client.logout()
    dg = signed_in(client, "dongguan")
    with tenant_context(dongguan):
        insured = Claim.objects.get(claim_id="shenzhen-W1", role="insured")
    page = dg.get(f"/admin/medical/claim/{insured.pk}/change/", **DG).content.decode()
    assert "起付线扣除" in page and "80%" in page and "¥286.00" in page
    # The person's year to date: 起付线 100.00 all used, 286.00 of the 1,000.00 封顶线 paid.
    listing = dg.get("/admin/medical/insuredyear/", **DG).content.decode()
    assert card in listing and "¥100.00 / ¥100.00" in listing and "¥286.00 / ¥1,000.00" in listing
    assert "¥714.00" in listing


def test_an_insured_persons_category_and_a_closed_year_go_through_their_services(client, tenant, world):
    _, dongguan, card = world
    admin = signed_in(client, "dongguan")
    with tenant_context(dongguan):
        year = InsuredYear.objects.get(card_no=card, year=2026)
    response = admin.post(
        f"/admin/medical/insuredyear/{year.pk}/change/",
        {"card_no": card, "year": "2026", "category": "resident"},
        **DG,
    )
    assert response.status_code == 302, response.content.decode()
    [entry] = audit(dongguan, "medical.insured_year_set_category")
    assert entry.actor == "user:dongguan-city_admin" and entry.object_id == f"{card}:2026"
    page = admin.get(f"/admin/medical/insuredyear/{year.pk}/change/", **DG).content.decode()
    assert "没有生效的城乡居民医保待遇政策" in page  # no residents' policy: their claims would be refused
    # A card that is not Dongguan's is refused on the form.
    response = admin.post(
        "/admin/medical/insuredyear/add/",
        {"card_no": "4419000300000000002", "year": "2026", "category": "resident"},
        **DG,
    )
    assert response.status_code == 200 and "本地没有发行卡片 4419000300000000002" in response.content.decode()
    response = admin.post("/admin/medical/closedyear/add/", {"year": "2025"}, **DG)
    assert response.status_code == 302
    with tenant_context(dongguan):
        assert ClosedYear.objects.get(year=2025).closed_by == "user:dongguan-city_admin"
    assert len(audit(dongguan, "medical.year_close")) == 1
    response = admin.post("/admin/medical/closedyear/add/", {"year": "2999"}, **DG)
    assert "尚未结束" in response.content.decode()  # has not ended yet


def test_a_county_officer_sees_no_medical_pages(client, tenant):
    officer = signed_in(client, "haiyan", Role.COUNTY_OFFICER)
    host = {"HTTP_HOST": "haiyan.localhost"}
    assert "/admin/medical/" not in officer.get("/admin/", **host).content.decode()
    for page in ("catalogueitem", "policy", "claim", "insuredyear", "closedyear"):
        assert officer.get(f"/admin/medical/{page}/", **host).status_code == 403, page

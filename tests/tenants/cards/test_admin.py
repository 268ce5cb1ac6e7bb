"""The tenant admin for city administrators: search by name, card number or ID number (blind index),
filters, lifecycle actions behind a confirmation page, each card's audit trail; counties read only."""

from __future__ import annotations

import pytest

from citycard.platform import services as platform
from citycard.platform.models import Role
from citycard.tenants.cards import services as cards
from citycard.tenants.cards.models import Card
from citycard.tenants.cards.pii import id_mask

from ..conftest import new_id

pytestmark = pytest.mark.django_db
HOST = {"HTTP_HOST": "jiaxing.localhost"}


@pytest.fixture
def admin_client(client, city):
    user = platform.user_create(
        username="jx-admin", role=Role.CITY_ADMIN, tenant_code="jiaxing", password="pw-123456789", actor="t"
    )
    client.force_login(user)
    return client


def test_search_filters_and_audit_trail(admin_client, holder):
    number = new_id()
    person = holder(name="欧阳修", id_number=number)
    card = cards.card_issue_now(scheme_code="01", cardholder_id=person.pk, actor="t")
    holder(name="苏轼")
    for query in (number, card.card_no, "欧阳"):
        response = admin_client.get("/admin/cards/cardholder/", {"q": query}, follow=True, **HOST)
        html = response.content.decode()
        assert "欧阳修" in html and "苏轼" not in html, query
        assert id_mask(number) in html and number[6:14] not in html  # not even echoed from the search box
        assert all(number not in url for url, _ in response.redirect_chain)
    # Found by POST, the number is in no address at all.
    response = admin_client.post("/admin/cards/cardholder/", {"find": number}, follow=True, **HOST)
    assert "欧阳修" in response.content.decode() and number not in response.content.decode()
    assert all(number not in url for url, _ in response.redirect_chain)
    html = admin_client.get("/admin/cards/card/", {"q": number}, follow=True, **HOST).content.decode()
    assert card.card_no in html and number not in html
    html = admin_client.get("/admin/cards/card/", {"state__exact": "frozen"}, **HOST).content.decode()
    assert card.card_no not in html
    page = admin_client.get(f"/admin/cards/card/{card.pk}/change/", **HOST).content.decode()
    for action in ("card.apply", "card.produce", "card.issue", "card.activate"):
        assert action in page


def test_lifecycle_action_asks_for_confirmation_then_acts(admin_client, holder):
    card = cards.card_issue_now(scheme_code="01", cardholder_id=holder().pk, actor="t")
    form = {"action": "report_lost_selected", "_selected_action": [card.pk]}
    first = admin_client.post("/admin/cards/card/", form, **HOST)
    assert first.status_code == 200 and "确认" in first.content.decode()  # Confirm
    assert Card.objects.get(pk=card.pk).state == "active"
    admin_client.post("/admin/cards/card/", {**form, "confirm": "yes"}, **HOST)
    assert Card.objects.get(pk=card.pk).state == "frozen"
    # A refused transition is reported, nothing changes.
    response = admin_client.post(
        "/admin/cards/card/",
        {"action": "activate_selected", "_selected_action": [card.pk], "confirm": "yes"},
        follow=True,
        **HOST,
    )
    assert any("无法对卡片" in str(m) and "启用" in str(m) for m in response.context["messages"])
    assert Card.objects.get(pk=card.pk).state == "frozen"


def test_register_a_cardholder_through_the_admin(admin_client):
    number = new_id()
    response = admin_client.post(
        "/admin/cards/cardholder/add/",
        {
            "name": "范仲淹",
            "id_number": number,
            "phone": "13811112222",
            "local_hukou": "on",
            "categories-TOTAL_FORMS": "0",
            "categories-INITIAL_FORMS": "0",
            "cards-TOTAL_FORMS": "0",
            "cards-INITIAL_FORMS": "0",
        },
        **HOST,
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    from citycard.tenants.cards.selectors import cardholder_search

    assert cardholder_search(query=number).get().name == "范仲淹"


def test_a_county_officer_sees_the_city_schemes_read_only(client, tenant):
    from django_tenants.utils import tenant_context

    with tenant_context(tenant("jiaxing")):
        cards.schemes_seed(actor="t")
        cards.schemes_publish(actor="t")
    officer = platform.user_create(
        username="hy-officer",
        role=Role.COUNTY_OFFICER,
        tenant_code="haiyan",
        password="pw-123456789",
        actor="t",
    )
    client.force_login(officer)
    page = client.get("/admin/cards/cardscheme/", HTTP_HOST="haiyan.localhost")
    html = page.content.decode()
    assert page.status_code == 200 and "社会保障·市民卡" in html and "新居民卡" in html and "（只读）" in html
    assert client.get("/admin/cards/cardscheme/add/", HTTP_HOST="haiyan.localhost").status_code == 403


def test_an_imported_card_shows_its_batch_in_the_audit_trail(admin_client, tmp_path):
    from citycard.tenants.cards.batch import cards_import

    path = tmp_path / "ward-7.csv"
    path.write_text(f"name,id_number,local_hukou\n陆游,{new_id()},1\n", encoding="utf-8")
    cards_import(path=path, actor="t", state="active")
    card = Card.objects.get(source="import:ward-7:2")
    page = admin_client.get(f"/admin/cards/card/{card.pk}/change/", **HOST).content.decode()
    assert "card.import" in page and "batch ward-7" in page


def test_an_anonymous_card_cannot_be_reported_lost_from_the_admin(admin_client):
    """The rule is the service's (cards.services.card_loss_report_check): the admin action gets it too."""
    card = cards.card_issue_now(scheme_code="03", cardholder_id=None, actor="t")
    response = admin_client.post(
        "/admin/cards/card/",
        {"action": "report_lost_selected", "_selected_action": [card.pk], "confirm": "yes"},
        follow=True,
        **HOST,
    )
    assert any("不记名卡" in str(m) for m in response.context["messages"])
    assert Card.objects.get(pk=card.pk).state == "active"

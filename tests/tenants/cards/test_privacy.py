"""Personal data that cannot be pieced together: what is stored and shown of a cardholder, changes through
the service, numbers kept out of addresses, and the cardholder's access log (who read what, under which
grant, key or session)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import CommandError, call_command

from citycard.platform import services as platform
from citycard.platform.audit.models import AuditEntry
from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError
from citycard.platform.models import Role
from citycard.tenants.cards import services as cards
from citycard.tenants.cards.models import Cardholder
from citycard.tenants.cards.pii import address_mask, decade_label, id_mask
from citycard.tenants.cards.selectors import (
    cardholder_access_log,
    cardholder_pii,
    cardholder_search,
    cardholder_search_ref,
)
from citycard.tenants.departments import services as departments

from ..conftest import new_id

# What a command or a refusal says is checked in English, the source text (the `english` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
HOST = {"HTTP_HOST": "jiaxing.localhost"}


def test_no_column_holds_the_birth_date_or_more_than_two_id_characters(city):
    number = new_id(birth=dt.date(1951, 2, 3))
    person = cards.cardholder_register(
        name="王五", id_number=number, phone="13912345678", address="浙江省嘉兴市南湖区中山路 1 号", actor="t"
    )
    row = Cardholder.objects.filter(pk=person.pk).values().get()
    assert "birth_date" not in row and row["birth_decade"] == 1950 and decade_label(1950) == "50后"
    assert row["id_masked"] == f"{number[0]}{'*' * 16}{number[-1]}"
    assert row["address_masked"] == "浙江省嘉兴市****" == address_mask("浙江省嘉兴市南湖区中山路 1 号")
    readable = " ".join(str(v) for v in row.values() if not isinstance(v, (bytes, memoryview)))
    for secret in (number, number[6:14], "1951-02-03", "13912345678", "中山路"):
        assert secret not in readable
    assert cardholder_pii(cardholder=person) == {
        "id_number": number,
        "birth_date": "1951-02-03",
        "phone": "13912345678",
        "address": "浙江省嘉兴市南湖区中山路 1 号",
    }
    register = AuditEntry.objects.get(action="cardholder.register", object_id=str(person.pk))
    assert number[:6] not in register.payload and number[-4:] not in register.payload


def test_an_age_category_starts_the_month_after_the_birthday():
    assert cards.age_category_from(dt.date(1951, 2, 3), years=70) == dt.date(2021, 3, 1)
    assert cards.age_category_from(dt.date(1955, 12, 31), years=60) == dt.date(2016, 1, 1)


def test_cardholder_update_seals_again_and_audits_fields_not_values(city):
    person = cards.cardholder_register(name="赵六", id_number=new_id(), phone="13900000001", actor="t")
    cards.cardholder_update(
        cardholder_id=person.pk,
        changes={
            "phone": "13900000002",
            "address": "浙江省嘉兴市秀洲区新城路 8 号",
            "employer": "南湖区医院",
        },
        actor="t",
    )
    person.refresh_from_db()
    assert person.phone_masked == "139****0002" and person.address_masked == "浙江省嘉兴市****"
    assert cardholder_pii(cardholder=person)["address"] == "浙江省嘉兴市秀洲区新城路 8 号"
    assert cardholder_search(query="13900000002").get() == person
    assert not cardholder_search(query="13900000001").exists()
    entry = AuditEntry.objects.filter(action="cardholder.update", object_id=str(person.pk)).get()
    assert "13900000002" not in entry.payload and "新城路" not in entry.payload
    assert '"fields":["address","employer","phone"]' in entry.payload
    before = AuditEntry.objects.count()
    with pytest.raises(DomainError) as bad:
        cards.cardholder_update(
            cardholder_id=person.pk, changes={"phone": "12345", "name": "钱七"}, actor="t"
        )
    assert bad.value.field == "phone"
    with pytest.raises(DomainError) as bad:
        cards.cardholder_update(cardholder_id=person.pk, changes={"id_masked": "1"}, actor="t")
    assert bad.value.field == "id_masked"
    person.refresh_from_db()
    assert person.name == "赵六" and AuditEntry.objects.count() == before  # nothing half-written


def test_search_ref_stands_for_an_id_or_phone_number_and_reveals_neither(city):
    number = new_id()
    person = cards.cardholder_register(name="孙八", id_number=number, phone="13911112222", actor="t")
    for typed in (number, "13911112222", "+8613911112222"):
        ref = cardholder_search_ref(query=typed)
        assert ref.startswith("ref:") and number not in ref and "1111" not in ref
        assert cardholder_search(query=ref).get() == person
    assert cardholder_search_ref(query="孙八") is None and cardholder_search_ref(query="1" * 19) is None


@pytest.fixture
def officer(client, city):
    user = platform.user_create(
        username="jx-officer", role=Role.CITY_ADMIN, tenant_code="jiaxing", password="pw-123456789", actor="t"
    )
    client.force_login(user)
    return client


def test_access_log_lists_grant_graphql_and_admin_reads_and_nothing_of_others(officer, city):
    person = cards.cardholder_register(name="周九", id_number=new_id(), local_hukou=True, actor="t")
    other = cards.cardholder_register(name="吴十", id_number=new_id(), actor="t")
    card = cards.card_issue_now(scheme_code="01", cardholder_id=person.pk, actor="t")
    departments.department_create(code="jx-mz", kind="civil_affairs", name="民政局", actor="t")
    grant = departments.data_grant_create(
        department="jx-mz",
        fields=["name", "birth_date"],
        purpose="高龄津贴",
        valid_from=dt.date(2020, 1, 1),
        actor="t",
    )
    read = departments.cardholder_read(
        department="jx-mz",
        cardholder_id=person.pk,
        fields=["birth_date"],
        reason="津贴复核",
        reader="clerk-1",
    )
    assert read == {"birth_date": cardholder_pii(cardholder=person)["birth_date"]}
    audit_record(  # what the GraphQL endpoint writes for a partner's read of a card and a listing
        action="graphql.read",
        actor="apikey:jx-metro",
        object_type="apikey",
        object_id="jx-metro",
        data={
            "operation": "CardTrips",
            "reads": [{"type": "card_transactions", "ids": [card.card_no], "fields": ["amount"]}],
        },
    )
    audit_record(
        action="graphql.read",
        actor="apikey:jx-library",
        object_type="apikey",
        object_id="jx-library",
        data={"operation": "Other", "reads": [{"type": "cardholder", "ids": [str(other.pk)]}]},
    )
    page = officer.get(f"/admin/cards/cardholder/{person.pk}/change/", **HOST)
    assert page.status_code == 200 and "access-log" in page.content.decode()
    log = cardholder_access_log(cardholder_id=person.pk)
    assert [(e.channel, e.under, e.reader) for e in log] == [
        ("admin", "user:jx-officer", "user:jx-officer"),
        ("api_key", "jx-metro", "apikey:jx-metro"),
        ("grant", f"jx-mz grant #{grant.pk}", "clerk-1"),
    ]
    assert log[1].fields == ("amount",) and log[1].purpose == "CardTrips" and log[2].purpose == "津贴复核"
    html = officer.get(f"/admin/cards/cardholder/{person.pk}/access-log/", **HOST).content.decode()
    assert "jx-metro" in html and "jx-mz grant" in html and "jx-library" not in html


def test_access_log_command(city, capsys):
    number = new_id()
    person = cards.cardholder_register(name="郑一", id_number=number, actor="t")
    departments.department_create(code="jx-rs", kind="hrss", name="人社局", actor="t")
    departments.data_grant_create(
        department="jx-rs", fields=["phone"], purpose="社保卡通知", valid_from=dt.date(2020, 1, 1), actor="t"
    )
    departments.cardholder_read(
        department="jx-rs", cardholder_id=person.pk, fields=["phone"], reason="补卡通知", reader="clerk-2"
    )
    call_command("cards", "--tenant", "jiaxing", "access-log", "--id-number", number)
    out = capsys.readouterr().out
    assert "clerk-2" in out and "补卡通知" in out and id_mask(number) in out and number not in out
    with pytest.raises(CommandError, match="no cardholder for card 3304000100000000000"):
        call_command("cards", "--tenant", "jiaxing", "access-log", "--card", "3304000100000000000")

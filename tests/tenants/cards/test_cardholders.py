"""Cardholders: GB 11643 check, derived birth date and sex, encryption, blind index, masking, categories."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from citycard.platform.errors import Conflict, DomainError
from citycard.tenants.cards.models import Cardholder
from citycard.tenants.cards.pii import id_check_char, id_mask, id_number_parse, phone_mask
from citycard.tenants.cards.selectors import card_facts, cardholder_pii, cardholder_search

from .conftest import new_id

# What a command or a refusal says is checked in English, the source text (the `english` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def test_gb11643_check_character_known_example():
    # The example of GB 11643-1999 appendix: 11010519491231002X.
    assert id_check_char("11010519491231002") == "X"
    parsed = id_number_parse("11010519491231002x")
    assert (parsed.birth_date, parsed.sex, parsed.division) == (dt.date(1949, 12, 31), "F", "110105")


@pytest.mark.parametrize(
    ("value", "code", "fragment"),
    [
        ("110105194912310021", "bad_checksum", "should be X"),
        ("11010519491231002", "invalid", "18 characters"),
        ("1101051949123100AX", "invalid", "18 characters"),
        ("110105194913310021", "invalid", "not a date"),
    ],
)
def test_bad_id_numbers_are_refused_with_the_reason(value, code, fragment):
    with pytest.raises(DomainError) as info:
        id_number_parse(value)
    assert info.value.code == code and info.value.field == "id_number"
    assert fragment in info.value.message


def test_register_encrypts_masks_and_derives(holder, city):
    number = new_id(birth=dt.date(1950, 1, 2))
    person = holder(name="李四", id_number=number, phone="13812345678")
    person.refresh_from_db()
    assert person.birth_decade == 1950 and person.sex == ("M" if int(number[16]) % 2 else "F")
    assert person.id_masked == id_mask(number) == f"{number[0]}{'*' * 16}{number[-1]}"
    assert person.phone_masked == phone_mask("13812345678") == "138****5678"
    assert number.encode() not in bytes(person.id_cipher)
    assert cardholder_pii(cardholder=person) == {
        "id_number": number,
        "birth_date": "1950-01-02",
        "phone": "13812345678",
        "address": "",
    }
    assert list(cardholder_search(query=number)) == [person]
    assert list(cardholder_search(query="13812345678")) == [person]
    assert list(cardholder_search(query="李")) == [person]
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM cards_cardholder WHERE id_blind = %s", [number])
        assert cur.fetchone()[0] == 0


def test_same_person_twice_is_a_conflict_and_writes_nothing(holder):
    number = new_id()
    holder(id_number=number)
    before = Cardholder.objects.count()
    with pytest.raises(Conflict):
        holder(id_number=number, name="Other")
    assert Cardholder.objects.count() == before


def test_bad_phone_and_category_refused(holder):
    with pytest.raises(DomainError) as info:
        holder(phone="12345")
    assert info.value.field == "phone"
    with pytest.raises(DomainError) as info:
        holder(categories=[{"code": "vip", "valid_from": dt.date(2026, 1, 1)}])
    assert info.value.field == "categories"
    assert not Cardholder.objects.exists()


def test_categories_valid_by_date_in_card_facts(holder):
    from citycard.tenants.cards.services import card_issue_now

    person = holder(
        categories=[
            {"code": "student", "valid_from": dt.date(2026, 9, 1), "valid_to": dt.date(2027, 6, 30)},
            {"code": "disabled", "valid_from": dt.date(2020, 1, 1)},
        ]
    )
    card = card_issue_now(scheme_code="01", cardholder_id=person.pk, actor="test")
    at = dt.datetime(2026, 10, 1, 8, tzinfo=dt.UTC)
    assert card_facts(card_nos=[card.card_no], at=at)[card.card_no].categories == {"student", "disabled"}
    later = dt.datetime(2027, 7, 1, 8, tzinfo=dt.UTC)
    assert card_facts(card_nos=[card.card_no], at=later)[card.card_no].categories == {"disabled"}


def test_data_key_rotation_keeps_reading_and_reencrypts(holder, city):
    from citycard.platform.keys import tenant_key_rotate
    from citycard.tenants.cards.services import cardholder_pii_reencrypt

    number = new_id()
    person = holder(id_number=number, phone="13700000000")
    old_key = person.key_id
    tenant_key_rotate(tenant=city, purpose="data", actor="t")
    person.refresh_from_db()
    assert cardholder_pii(cardholder=person)["id_number"] == number  # the retired key still decrypts
    assert cardholder_reencrypt_all(cardholder_pii_reencrypt) >= 1
    person.refresh_from_db()
    assert person.key_id != old_key
    assert cardholder_pii(cardholder=person)["phone"] == "13700000000"
    assert list(cardholder_search(query=number)) == [person]  # the blind index survives the rotation


def cardholder_reencrypt_all(run) -> int:
    total = 0
    while moved := run(actor="t"):
        total += moved
    return total

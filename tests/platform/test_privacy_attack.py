"""The reconstruction attacker (tests/privacy_attack.py) rebuilds what the earlier masks let through, so
its "not rebuilt" on the demo (tests/e2e/test_demo.py) means something."""

from __future__ import annotations

import datetime as dt

from citycard.tenants.cards.pii import address_mask, id_mask, id_number_build, phone_mask

from ..privacy_attack import MIN_CANDIDATES, Person, attack, dump_tables, link_dump, link_pages

TODAY = dt.date(2026, 12, 7)
NUMBER = id_number_build(division="330102", birth_date=dt.date(1951, 2, 3), sequence=8)
OLD_MASK = f"{NUMBER[:6]}********{NUMBER[-4:]}"


def verdicts(*evidence: str, phone: str = "13812345678") -> dict[str, int]:
    person = Person("p", NUMBER, phone, list(evidence))
    return {v.what: v.candidates for v in attack([person], today=TODAY)}


def test_six_plus_four_with_a_birth_date_is_rebuilt():
    assert verdicts(f"王五\t{OLD_MASK}\t1951-02-03")["id"] == 1
    assert verdicts(f"王五 {OLD_MASK} Feb. 3, 1951")["id"] == 1


def test_six_plus_four_with_a_concession_from_the_70th_birthday_is_rebuilt():
    assert verdicts(f"{OLD_MASK}", "elderly\t2021-02-03\t\\N")["id"] < MIN_CANDIDATES
    assert verdicts(f"{OLD_MASK}", "elderly\t2021-03-01\t\\N")["id"] < MIN_CANDIDATES  # the month after


def test_the_whole_number_anywhere_is_rebuilt():
    assert verdicts(f"search?q={NUMBER}")["id"] == 1
    assert verdicts("13812345678")["phone"] == 1


def test_two_different_phone_masks_are_combined():
    assert verdicts("138****5678", "1381234****")["phone"] == 1
    assert verdicts("138****5678")["phone"] == 10_000


def test_the_current_masks_with_decade_and_concession_month_are_not_rebuilt():
    shown = verdicts(
        f"王五\t{id_mask(NUMBER)}\t{phone_mask('13812345678')}\t50后\t{address_mask('浙江省杭州市上城区解放路 1 号')}",
        "elderly\t2021-03-01\t\\N",
    )
    assert shown["id"] >= MIN_CANDIDATES and shown["phone"] >= MIN_CANDIDATES
    # Even the exact birth date leaves the three hidden sequence digits.
    assert verdicts(id_mask(NUMBER), "1951-02-03")["id"] >= 45


def test_dump_and_pages_are_linked_to_the_right_people():
    other = id_number_build(division="330102", birth_date=dt.date(1990, 6, 7), sequence=9)
    dump = "\n".join(
        [
            "COPY hangzhou.cards_cardholder (id, name, id_masked) FROM stdin;",
            f"1\t王五\t{OLD_MASK}",
            f"2\t李四\t{other[:6]}********{other[-4:]}",
            "\\.",
            "COPY hangzhou.cards_card (id, card_no, cardholder_id) FROM stdin;",
            "7\t3301000100000000013\t1",
            "\\.",
            "COPY hangzhou.terminals_transaction (id, card_no, at) FROM stdin;",
            "1\t3301000100000000013\t1951-02-03 10:00:00+08",
            "\\.",
        ]
    )
    assert sorted(dump_tables(dump)) == [
        "hangzhou.cards_card",
        "hangzhou.cards_cardholder",
        "hangzhou.terminals_transaction",
    ]
    people = {("hangzhou", 1): Person("a", NUMBER), ("hangzhou", 2): Person("b", other)}
    link_dump(dump, people)
    assert any("1951-02-03" in e for e in people[("hangzhou", 1)].evidence)  # through the card number
    assert not any("1951-02-03" in e for e in people[("hangzhou", 2)].evidence)
    page = '<table><tr><td><a href="/admin/cards/cardholder/2/change/">李四</a></td><td>1990-06-07</td></tr></table>'
    link_pages([("hangzhou", "/admin/cards/cardholder/", page)], people)
    found = {v.key: v.candidates for v in attack(people.values(), today=TODAY) if v.what == "id"}
    assert found == {"a": 1, "b": 1}

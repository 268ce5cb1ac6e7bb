"""Every lifecycle transition, every refused one, one main card per person (also in the database)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import Conflict, DomainError
from citycard.tenants.cards import services as s
from citycard.tenants.cards.models import Card, CardState, HotlistEntry
from citycard.tenants.cards.selectors import card_facts, hotlist_listings
from citycard.terminal_kit.cardno import card_number_parse
from citycard.terminal_kit.hotlist import NO_GRACE, listing_at

from ..conftest import new_id

# What a command or a refusal says is checked in English, the source text (the `english` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)

ACTIONS = {
    "produce": lambda no: s.card_produce(card_no=no, actor="t"),
    "issue": lambda no: s.card_issue(card_no=no, actor="t"),
    "activate": lambda no: s.card_activate(card_no=no, actor="t"),
    "report_lost": lambda no: s.card_report_lost(card_no=no, actor="t"),
    "unfreeze": lambda no: s.card_unfreeze(card_no=no, actor="t"),
    "replace": lambda no: s.card_replace(card_no=no, actor="t"),
    "cancel": lambda no: s.card_cancel(card_no=no, actor="t"),
}
ALLOWED = {
    "produce": {"applied"},
    "issue": {"produced"},
    "activate": {"issued"},
    "report_lost": {"active"},
    "unfreeze": {"frozen"},
    "replace": {"active", "frozen"},
    "cancel": {"applied", "produced", "issued", "active", "frozen"},
}
PATH = {  # how to bring a fresh card to each state
    "applied": [],
    "produced": ["produce"],
    "issued": ["produce", "issue"],
    "active": ["produce", "issue", "activate"],
    "frozen": ["produce", "issue", "activate", "report_lost"],
    "replaced": ["produce", "issue", "activate", "replace"],
    "cancelled": ["cancel"],
}


def card_in(state: str, holder) -> Card:
    card = s.card_apply(scheme_code="01", cardholder_id=holder().pk, actor="t")
    for step in PATH[state]:
        ACTIONS[step](card.card_no)
    card.refresh_from_db()
    assert card.state == state
    return card


def test_card_number_carries_division_scheme_and_luhn(holder, city):
    card = s.card_apply(scheme_code="01", cardholder_id=holder().pk, actor="t")
    parts = card_number_parse(card.card_no)
    assert (parts.division, parts.scheme) == ("330400", "01")
    assert card.is_main and card.state == "applied"


def test_happy_path_writes_an_audit_entry_per_step(holder):
    card = s.card_apply(scheme_code="01", cardholder_id=holder().pk, actor="t", at=T0)
    s.card_produce(card_no=card.card_no, actor="t", at=T0)
    issued = s.card_issue(card_no=card.card_no, actor="t", at=T0)
    assert issued.expires_on == dt.date(2036, 11, 2)
    s.card_activate(card_no=card.card_no, actor="t")
    s.card_ss_activate(card_no=card.card_no, actor="t")
    actions = list(
        AuditEntry.objects.filter(object_type="card", object_id=card.card_no)
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["card.apply", "card.produce", "card.issue", "card.activate", "card.ss_activate"]


@pytest.mark.parametrize("state", list(PATH))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_transition_from_every_state(holder, state, action):
    card = card_in(state, holder)
    audit_before = AuditEntry.objects.count()
    if state in ALLOWED[action]:
        ACTIONS[action](card.card_no)
        card.refresh_from_db()
        assert AuditEntry.objects.count() > audit_before
        return
    with pytest.raises(DomainError) as info:
        ACTIONS[action](card.card_no)
    assert info.value.code == "invalid_state"
    assert f"it is {state}" in info.value.message.lower()  # the state's label
    card.refresh_from_db()
    assert card.state == state
    assert AuditEntry.objects.count() == audit_before


def test_ss_activation_refusals(holder, city):
    card = card_in("issued", holder)
    with pytest.raises(DomainError, match=r"(?i)only a card that is active"):
        s.card_ss_activate(card_no=card.card_no, actor="t")
    s.card_activate(card_no=card.card_no, actor="t")
    s.card_ss_activate(card_no=card.card_no, actor="t")
    with pytest.raises(Conflict):
        s.card_ss_activate(card_no=card.card_no, actor="t")
    anon = s.card_issue_now(scheme_code="03", cardholder_id=None, actor="t")
    with pytest.raises(DomainError) as info:
        s.card_ss_activate(card_no=anon.card_no, actor="t")
    assert info.value.code == "no_social_security"


def test_loss_hotlists_with_effective_time_and_unfreeze_removes(holder):
    card = card_in("active", holder)
    s.card_report_lost(card_no=card.card_no, actor="t", at=T0)
    assert card_facts(card_nos=[card.card_no], at=T0)[card.card_no].state == "frozen"

    def listed(at):
        listing = listing_at(hotlist_listings(card_nos=[card.card_no])[card.card_no], at=at, grace=NO_GRACE)
        return (listing.listed_at, listing.reason) if listing else None

    assert listed(T0 + dt.timedelta(minutes=1)) == (T0, "lost")
    assert listed(T0 - dt.timedelta(minutes=1)) is None
    s.card_unfreeze(card_no=card.card_no, actor="t", at=T0 + dt.timedelta(hours=2))
    assert listed(T0 + dt.timedelta(hours=3)) is None
    # The loss hour stays on record: a tap made then was on a hotlisted card.
    assert listed(T0 + dt.timedelta(hours=1)) == (T0, "lost")


def test_replacement_moves_money_and_hotlists_the_old_card(holder):
    from citycard.tenants.accounts.models import LedgerAccount, PurseShadow
    from citycard.tenants.accounts.services import (
        PurseMovement,
        account_open,
        account_topup,
        purse_shadow_apply,
    )

    card = card_in("active", holder)
    account_open(card_no=card.card_no, actor="t")
    account_topup(card_no=card.card_no, amount_fen=5000, idempotency_key="k1", actor="t")
    purse_shadow_apply(movements=[PurseMovement(card.card_no, 1, 1000, 800, T0)])
    s.card_report_lost(card_no=card.card_no, actor="t", at=T0)
    new = s.card_replace(card_no=card.card_no, actor="t", at=T0 + dt.timedelta(days=1))
    card.refresh_from_db()
    assert card.state == "replaced" and new.state == "issued" and new.replaces_id == card.pk
    assert new.cardholder_id == card.cardholder_id and new.is_main
    assert new.fee_fen == 2000
    assert PurseShadow.objects.get(card_no=new.card_no).balance_fen == 800
    assert PurseShadow.objects.get(card_no=card.card_no).balance_fen == 0
    account = LedgerAccount.objects.get(cardholder_id=card.cardholder_id)
    assert (account.card_no, account.balance_fen) == (new.card_no, 5000)
    assert HotlistEntry.objects.filter(card_no=card.card_no, removed_at__isnull=True).count() == 1


def test_replacing_an_active_card_puts_it_on_the_hotlist(holder):
    card = card_in("active", holder)
    s.card_replace(card_no=card.card_no, actor="t", at=T0)
    assert HotlistEntry.objects.get(card_no=card.card_no).reason == "replaced"


def test_one_main_card_per_person_in_code_and_in_the_database(holder):
    person = holder()
    first = s.card_apply(scheme_code="01", cardholder_id=person.pk, actor="t")
    with pytest.raises(Conflict) as info:
        s.card_apply(scheme_code="01", cardholder_id=person.pk, actor="t")
    assert info.value.code == "one_per_person"
    with pytest.raises(IntegrityError), transaction.atomic():
        Card.objects.create(
            card_no="3304000199999999990",
            scheme=first.scheme,
            cardholder=person,
            is_main=True,
            state=CardState.ACTIVE,
            applied_at=T0,
        )
    s.card_cancel(card_no=first.card_no, actor="t")
    again = s.card_apply(scheme_code="01", cardholder_id=person.pk, actor="t")
    assert again.card_no != first.card_no


def test_eligibility_and_real_name_refusals(holder):
    outsider = holder(local_hukou=False)
    with pytest.raises(DomainError) as info:
        s.card_apply(scheme_code="01", cardholder_id=outsider.pk, actor="t")
    assert info.value.code == "not_eligible"
    with pytest.raises(DomainError) as info:
        s.card_apply(scheme_code="01", cardholder_id=None, actor="t")
    assert info.value.field == "cardholder_id"
    resident = holder(local_hukou=False, residence_permit=True)
    assert s.card_apply(scheme_code="02", cardholder_id=resident.pk, actor="t").card_no[6:8] == "02"
    with pytest.raises(DomainError) as info:
        s.card_apply(scheme_code="99", cardholder_id=resident.pk, actor="t")
    assert info.value.field == "scheme_code"


def test_county_issues_no_cards(tenant):
    from django_tenants.utils import tenant_context

    with tenant_context(tenant("haiyan")):
        with pytest.raises(DomainError) as info:
            s.schemes_seed(actor="t")
        assert info.value.code == "county_read_only"
        with pytest.raises(DomainError) as info:
            s.cardholder_register(name="x", id_number=new_id(), actor="t")
        assert info.value.code == "county_read_only"


def test_a_retried_application_returns_the_first_card(holder):
    person = holder()
    first = s.card_apply(scheme_code="01", cardholder_id=person.pk, request_key="win-42", actor="t")
    again = s.card_apply(scheme_code="01", cardholder_id=person.pk, request_key="win-42", actor="t")
    assert again.pk == first.pk and Card.objects.filter(cardholder=person).count() == 1
    with pytest.raises(Conflict):
        s.card_apply(scheme_code="03", cardholder_id=None, request_key="win-42", actor="t")


def test_an_anonymous_card_cannot_be_reported_lost(holder):
    """挂失 needs a holder to prove the loss: refused by the service, whoever calls it; nothing written."""
    card = s.card_issue_now(scheme_code="03", cardholder_id=None, actor="t")
    audit = AuditEntry.objects.count()
    for report in (s.card_report_lost, s.card_report_lost_once):
        with pytest.raises(DomainError) as refused:
            report(card_no=card.card_no, actor="t", at=T0)
        assert (refused.value.code, refused.value.field) == ("anonymous_card", "card_no")
    assert Card.objects.get(pk=card.pk).state == CardState.ACTIVE
    assert not HotlistEntry.objects.filter(card_no=card.card_no).exists()
    assert AuditEntry.objects.count() == audit
    # A registered card of the same scheme is reported lost as ever.
    named = s.card_issue_now(scheme_code="03", cardholder_id=holder().pk, actor="t")
    assert s.card_report_lost(card_no=named.card_no, actor="t", at=T0).state == CardState.FROZEN


def test_the_report_lost_command_refuses_an_anonymous_card(holder, capsys):
    """The command line gets the service's rule too: one line, exit code 2, nothing written."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    anonymous = s.card_issue_now(scheme_code="03", cardholder_id=None, actor="t")
    with pytest.raises(CommandError, match="anonymous") as refused:
        call_command("cards", "--tenant", "jiaxing", "report-lost", anonymous.card_no)
    assert refused.value.returncode == 2
    assert Card.objects.get(pk=anonymous.pk).state == CardState.ACTIVE
    named = s.card_issue_now(scheme_code="03", cardholder_id=holder().pk, actor="t")
    call_command("cards", "--tenant", "jiaxing", "report-lost", named.card_no, "--reason", "stolen")
    assert "frozen, on the hotlist" in capsys.readouterr().out
    assert HotlistEntry.objects.get(card_no=named.card_no, removed_at__isnull=True).reason == "stolen"

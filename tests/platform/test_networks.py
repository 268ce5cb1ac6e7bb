"""Roaming networks: eligibility, counties roaming through their city, membership dates."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import CommandError, call_command

from citycard.platform import selectors, services
from citycard.platform.errors import DomainError
from citycard.platform.models import NetworkMembership

pytestmark = pytest.mark.django_db


def test_session_members_and_counties_roam_through_their_city():
    members = selectors.network_members(network_code="yrd")
    codes = [m.tenant.code for m in members]
    assert codes == ["shanghai", "hangzhou", "tonglu", "jiaxing", "haiyan"]
    tonglu = next(m for m in members if m.tenant.code == "tonglu")
    assert tonglu.via.code == "hangzhou"


def test_county_networks_follow_the_city(tenant):
    assert [n.code for n in selectors.tenant_networks(tenant=tenant("haiyan"))] == ["yrd"]
    assert [n.code for n in selectors.networks_shared(a=tenant("haiyan"), b=tenant("shanghai"))] == ["yrd"]
    assert list(selectors.networks_shared(a=tenant("haiyan"), b=tenant("dongguan"))) == []


@pytest.mark.parametrize(
    ("network", "code", "error"),
    [
        ("gba", "hangzhou", "not_eligible"),
        ("yrd", "dongguan", "not_eligible"),
        ("yrd", "tonglu", "county_roams_through_city"),
        ("xyz", "hangzhou", "not_found"),
        ("yrd", "nowhere", "not_found"),
    ],
)
def test_refusals(network, code, error):
    before = NetworkMembership.objects.count()
    with pytest.raises(DomainError) as err:
        services.network_join(network_code=network, tenant_code=code)
    assert err.value.code == error
    assert NetworkMembership.objects.count() == before


def test_hong_kong_and_macao_are_eligible_for_gba():
    services.tenant_create(code="hongkong", division_code="810000")
    membership, created = services.network_join(network_code="gba", tenant_code="hongkong")
    assert created and membership.network.code == "gba"


@pytest.mark.usefixtures("english")
def test_join_is_idempotent_and_leave_records_the_date():
    services.tenant_create(code="suzhou", division_code="320500")
    _, created = services.network_join(
        network_code="yrd", tenant_code="suzhou", joined_on=dt.date(2026, 1, 1)
    )
    assert created
    _, created_again = services.network_join(network_code="yrd", tenant_code="suzhou")
    assert not created_again
    services.network_leave(network_code="yrd", tenant_code="suzhou", left_on=dt.date(2026, 6, 30))
    members_in_march = selectors.network_members(network_code="yrd", on=dt.date(2026, 3, 1))
    assert "suzhou" in [m.tenant.code for m in members_in_march]
    assert "suzhou" not in [m.tenant.code for m in selectors.network_members(network_code="yrd")]
    with pytest.raises(DomainError, match="not a member"):
        services.network_leave(network_code="yrd", tenant_code="suzhou")


@pytest.mark.usefixtures("english")
def test_cli_join(capsys):
    services.tenant_create(code="hefei", division_code="340100")
    call_command("network", "join", "yrd", "hefei", "--since", "2026-11-01")
    assert "hefei joined yrd since 2026-11-01" in capsys.readouterr().out
    with pytest.raises(CommandError, match="not eligible for gba"):
        call_command("network", "join", "gba", "hefei")
    with pytest.raises(CommandError, match="not YYYY-MM-DD"):
        call_command("network", "join", "yrd", "hefei", "--since", "yesterday")

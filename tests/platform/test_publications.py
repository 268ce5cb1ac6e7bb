import pytest

from citycard.platform import keys
from citycard.platform.errors import NotFound
from citycard.platform.models import Tenant
from citycard.platform.publications import publication_latest, publication_publish

pytestmark = pytest.mark.django_db


def test_publishing_signs_versions_and_is_idempotent():
    hangzhou = Tenant.objects.get(code="hangzhou")
    first = publication_publish(
        tenant=hangzhou, kind="card-schemes", payload={"schemes": ["main"]}, actor="t"
    )
    again = publication_publish(
        tenant=hangzhou, kind="card-schemes", payload={"schemes": ["main"]}, actor="t"
    )
    second = publication_publish(
        tenant=hangzhou, kind="card-schemes", payload={"schemes": ["main", "x"]}, actor="t"
    )
    assert again.pk == first.pk and (first.version, second.version) == (1, 2)
    _, payload = keys.tenant_verify(document=second.document, tenant=hangzhou)
    assert payload == {"schemes": ["main", "x"], "tenant": "hangzhou", "kind": "card-schemes", "version": 2}


def test_a_county_reads_its_citys_publication_never_another():
    hangzhou, tonglu = Tenant.objects.get(code="hangzhou"), Tenant.objects.get(code="tonglu")
    published = publication_publish(tenant=hangzhou, kind="fare-rules", payload={"rules": []}, actor="t")
    assert publication_latest(tenant=tonglu, kind="fare-rules", inherit=True).pk == published.pk
    with pytest.raises(NotFound):
        publication_latest(tenant=tonglu, kind="fare-rules")
    with pytest.raises(NotFound):
        publication_latest(tenant=Tenant.objects.get(code="haiyan"), kind="fare-rules", inherit=True)

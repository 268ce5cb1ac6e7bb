"""Signed publications: how a tenant's rules, schemes and hotlists reach counties, terminals and peers.

``publication_publish`` signs a payload with the tenant's key and stores it as the next version of its
kind (publishing the same payload again returns the current version: retries are harmless).
``publication_latest`` reads one; a county asking for a kind its city owns (``inherit=True``) gets the
city's. Readers verify the signature with :func:`citycard.platform.keys.tenant_verify` or offline with
the tenant's public keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.keys import tenant_sign
from citycard.platform.models import Publication, Tenant
from citycard.terminal_kit.signing import canonical_json


def payload_sha256(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload)).hexdigest()


@transaction.atomic
def publication_publish(*, tenant: Tenant, kind: str, payload: Mapping[str, Any], actor: str) -> Publication:
    """Sign ``payload`` as ``tenant`` and store it as the next version of ``kind``.

    The payload gets ``tenant``, ``kind`` and ``version`` fields added, so a signed document always says
    what it is and whose it is. Publishing a payload equal to the latest version's returns that version.
    """
    if not kind or not kind.replace("_", "-").replace("-", "").isalnum():
        raise DomainError(
            gettext("publication kind %(kind)r must be a slug") % {"kind": kind}, code="invalid", field="kind"
        )
    # Lock the tenant row so two publishers cannot take the same version number.
    Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
    body = {k: v for k, v in payload.items() if k not in {"tenant", "kind", "version"}}
    sha = payload_sha256(body)
    latest = Publication.objects.filter(tenant=tenant, kind=kind).order_by("-version").first()
    if latest is not None and latest.sha256 == sha:
        return latest
    version = (latest.version if latest else 0) + 1
    document = tenant_sign(
        tenant=tenant, payload={**body, "tenant": tenant.code, "kind": kind, "version": version}
    )
    publication = Publication.objects.create(
        tenant=tenant, kind=kind, version=version, sha256=sha, document=document, published_by=actor
    )
    audit_record(
        action="publication.publish",
        actor=actor,
        object_type="publication",
        object_id=f"{tenant.code}:{kind}:{version}",
        data={"sha256": sha},
    )
    return publication


def publication_latest(*, tenant: Tenant, kind: str, inherit: bool = False) -> Publication:
    """The newest version of ``kind`` published by ``tenant`` (by its city, for a county, if ``inherit``)."""
    owner = tenant.clearing_tenant if inherit else tenant
    publication = Publication.objects.filter(tenant=owner, kind=kind).order_by("-version").first()
    if publication is None:
        raise NotFound(
            gettext("%(owner)s has published no %(kind)s") % {"owner": owner.code, "kind": kind},
            code="not_published",
            field="kind",
        )
    return publication


def publication_get(*, tenant: Tenant, kind: str, version: int, inherit: bool = False) -> Publication:
    owner = tenant.clearing_tenant if inherit else tenant
    publication = Publication.objects.filter(tenant=owner, kind=kind, version=version).first()
    if publication is None:
        raise NotFound(
            gettext("%(owner)s has no %(kind)s version %(version)s")
            % {"owner": owner.code, "kind": kind, "version": version},
            code="not_published",
            field="version",
        )
    return publication

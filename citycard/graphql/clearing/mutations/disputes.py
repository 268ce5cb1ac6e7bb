"""Disputes (clearing staff): recording a party's dispute of a settled record, and resolving one. Thin over
citycard.interop.services.disputes.dispute_raise / dispute_resolve, which audit them (the staff member as actor)."""

from __future__ import annotations

import graphene
from django.utils.translation import gettext

from citycard.graphql.clearing import clock
from citycard.graphql.clearing.resolvers import dispute_pk
from citycard.graphql.clearing.types import Dispute
from citycard.graphql.core.mutations import BaseMutation, error_type
from citycard.interop.services import disputes
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.scopes import PlatformScope

DisputeRaiseError = error_type(
    "DisputeRaise",
    ["NOT_A_PARTY", "CYCLE_STATE", "WINDOW_CLOSED", "REASON_REQUIRED"],
    "Why no dispute was recorded (nothing was written).",
)
DisputeResolveError = error_type(
    "DisputeResolve",
    ["DISPUTE_STATE", "RESOLUTION_REQUIRED"],
    "Why a dispute was not resolved (nothing was written).",
)


class DisputeRaise(BaseMutation):
    dispute = graphene.Field(
        Dispute, description="The dispute (the open one, if the record already has one)."
    )

    error_fields = {"record_id": "record_id"}

    class Arguments:
        record_id = graphene.String(required=True, description="The clearing record disputed.")
        raised_by = graphene.String(
            required=True,
            description="The party disputing it: the record's issuer or acquirer (tenant code).",
        )
        reason = graphene.String(required=True)

    class Meta:
        description = (
            "Record a party's dispute of a settled record, inside the agreement's dispute window (as the party's "
            "signed clearing.dispute message would); its cycle shows DISPUTED until every dispute is resolved."
        )
        permissions = [PlatformScope.CLEARING_MANAGE]
        error_type_class = DisputeRaiseError

    @classmethod
    def perform_mutation(cls, root, info, record_id, raised_by, reason):
        if not reason.strip():
            raise DomainError(
                gettext("say why the record is disputed"), code="reason_required", field="reason"
            )
        dispute = disputes.dispute_raise(
            record_id=record_id.strip(),
            raised_by=raised_by.strip().lower(),
            reason=reason.strip(),
            now=clock.now(),
            actor=cls.actor(info),
        )
        return cls(dispute=dispute, errors=[])


class DisputeResolve(BaseMutation):
    dispute = graphene.Field(Dispute)

    error_fields = {"dispute": "id"}

    class Arguments:
        id = graphene.ID(required=True, description="The dispute's id.")
        accept = graphene.Boolean(
            required=True,
            description="Accepted: an adjustment reversing the record (and its fees) joins the open cycle. "
            "Rejected: nothing moves.",
        )
        resolution = graphene.String(required=True, description="The decision, in words.")

    class Meta:
        description = "Resolve an open dispute; the settled cycle is never edited."
        permissions = [PlatformScope.CLEARING_MANAGE]
        error_type_class = DisputeResolveError

    @classmethod
    def perform_mutation(cls, root, info, id, accept, resolution):
        pk = dispute_pk(id)
        if pk is None:
            raise NotFound(gettext("%(id)r is not a dispute's id") % {"id": id}, field="id")
        if not resolution.strip():
            raise DomainError(
                gettext("say how the dispute was decided"), code="resolution_required", field="resolution"
            )
        dispute = disputes.dispute_resolve(
            dispute_id=pk,
            accept=accept,
            resolution=resolution.strip(),
            actor=cls.actor(info),
            now=clock.now(),
        )
        return cls(dispute=dispute, errors=[])

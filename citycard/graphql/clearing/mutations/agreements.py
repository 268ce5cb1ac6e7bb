"""A new version of a roaming agreement (clearing staff): thin over
citycard.interop.services.agreements.agreement_version_add, which checks, audits (the staff member as
actor), prices the records of open cycles again and republishes the members' fare rules on a new visitor
policy."""

from __future__ import annotations

import graphene

from citycard.graphql.clearing import clock
from citycard.graphql.clearing.types import (
    AgreementVersion,
    ClearingServiceEnum,
    RoamingAgreement,
    VisitorPolicyEnum,
)
from citycard.graphql.core.mutations import BaseMutation, error_type
from citycard.graphql.core.types import enum_value
from citycard.interop import selectors
from citycard.interop.services import agreements
from citycard.platform.scopes import PlatformScope

RoamingAgreementVersionAddError = error_type(
    "RoamingAgreementVersionAdd",
    ["NO_AGREEMENT", "EFFECTIVE_DATE", "UNCHANGED"],
    "Why no version was added (nothing was written).",
)


class RoamingAgreementVersionAdd(BaseMutation):
    agreement_version = graphene.Field(AgreementVersion, description="The version added.")
    agreement = graphene.Field(RoamingAgreement, description="The agreement, with every version.")
    fares_republished = graphene.List(
        graphene.NonNull(graphene.String),
        description="Member cities whose fare rules were published again with the new visitor policy.",
    )

    class Arguments:
        network = graphene.String(required=True, description="The network's code (yrd, gba).")
        service = graphene.Argument(ClearingServiceEnum, required=True)
        effective_from = graphene.Date(
            required=True,
            description="Its first business date: after every cycle already cut off; monthly: a month's first day.",
        )
        visitor_policy = graphene.Argument(VisitorPolicyEnum, description="Unset: as in force that day.")
        issuer_fee_bps = graphene.Int(description="0..10000; unset: as in force that day.")
        network_fee_bps = graphene.Int(description="0..10000; unset: as in force that day.")
        cut_off = graphene.Time(description="Beijing time; unset: as in force that day.")
        hotlist_grace_minutes = graphene.Int(description="0..1440; unset: as in force that day.")
        note = graphene.String(description="Why it changes.")

    class Meta:
        description = (
            "Change a roaming agreement's terms from a business date: a new version (the old ones stay). Records "
            "of that date on are priced and cleared by it, whenever they are collected; a new visitor policy "
            "is republished in the member cities' fare rules."
        )
        permissions = [PlatformScope.CLEARING_MANAGE]
        error_type_class = RoamingAgreementVersionAddError

    @classmethod
    def perform_mutation(cls, root, info, network, service, effective_from, **terms):
        policy = terms.get("visitor_policy")
        version = agreements.agreement_version_add(
            network_code=network.strip().lower(),
            service=str(enum_value(service)),
            effective_from=effective_from,
            visitor_policy=str(enum_value(policy)) if policy is not None else None,
            issuer_fee_bps=terms.get("issuer_fee_bps"),
            network_fee_bps=terms.get("network_fee_bps"),
            cut_off=terms.get("cut_off"),
            hotlist_grace_minutes=terms.get("hotlist_grace_minutes"),
            note=(terms.get("note") or "").strip(),
            now=clock.now(),
            actor=cls.actor(info),
        )
        republished = sorted(code for code, published in version.fares_republished.items() if published)
        agreement = selectors.agreement_get(
            network_code=version.agreement.network.code, service=version.agreement.service
        )
        return cls(agreement_version=version, agreement=agreement, fares_republished=republished, errors=[])

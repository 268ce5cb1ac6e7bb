"""Suspending and activating a tenant (platform operators)."""

from __future__ import annotations

import graphene

from citycard.graphql.core.mutations import BaseMutation, error_type
from citycard.graphql.tenancy.types import Tenant
from citycard.platform import services
from citycard.platform.scopes import PlatformScope

TenantSuspendError = error_type(
    "TenantSuspend",
    ["REASON_REQUIRED", "NOT_ALLOWED", "ALREADY_SUSPENDED"],
    "Why a tenant was not suspended.",
)
TenantActivateError = error_type("TenantActivate", ["ALREADY_ACTIVE"], "Why a tenant was not activated.")


class TenantSuspend(BaseMutation):
    tenant = graphene.Field(Tenant)

    class Arguments:
        code = graphene.String(required=True, description="The tenant's code.")
        reason = graphene.String(required=True, description="Why; shown on its domain while suspended.")

    class Meta:
        description = "Suspend a tenant: its domain answers 403, its keys and users are refused."
        permissions = [PlatformScope.TENANTS_MANAGE]
        error_type_class = TenantSuspendError

    @classmethod
    def perform_mutation(cls, root, info, code, reason):
        tenant = services.tenant_suspend(code=code, reason=reason, actor=cls.actor(info))
        return cls(tenant=tenant, errors=[])


class TenantActivate(BaseMutation):
    tenant = graphene.Field(Tenant)

    class Arguments:
        code = graphene.String(required=True, description="The tenant's code.")

    class Meta:
        description = "Activate a suspended tenant."
        permissions = [PlatformScope.TENANTS_MANAGE]
        error_type_class = TenantActivateError

    @classmethod
    def perform_mutation(cls, root, info, code):
        tenant = services.tenant_activate(code=code, actor=cls.actor(info))
        return cls(tenant=tenant, errors=[])

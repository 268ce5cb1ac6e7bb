from __future__ import annotations

import graphene

from citycard.graphql.core.types import NonNullList
from citycard.platform.models import TenantKind

TenantKindEnum = graphene.Enum("TenantKind", [(k.name, k.value) for k in TenantKind])


class TenantInfo(graphene.ObjectType):
    """The tenant (city or county) whose endpoint this is."""

    code = graphene.String(required=True)
    name_zh = graphene.String(required=True)
    name_en = graphene.String(required=True)
    division_code = graphene.String(required=True, description="GB/T 2260 code; card numbers start with it.")
    kind = graphene.Field(TenantKindEnum, required=True)

    @staticmethod
    def resolve_kind(root, info):
        return str(root.kind)


class ApiKeyInfo(graphene.ObjectType):
    """The API key the request was made with (never the token itself)."""

    key_id = graphene.String(required=True)
    name = graphene.String(required=True, description="The partner app the key was issued to.")
    token_last4 = graphene.String(required=True, description="The last 4 characters of the token.")
    scopes = NonNullList(graphene.String)
    created_at = graphene.DateTime(required=True)
    expires_at = graphene.DateTime(required=True)
    tenant = graphene.Field(TenantInfo, required=True)

    @staticmethod
    def resolve_token_last4(root, info):
        return root.last4

    @staticmethod
    def resolve_scopes(root, info):
        return sorted(root.scopes)


class PlatformUser(graphene.ObjectType):
    """The platform user signed in (clearing staff or platform operator), or the platform API key."""

    username = graphene.String(required=True, description="For an API key: apikey:<key id>.")
    role = graphene.String(required=True, description="clearing_staff, platform_operator, or api_key.")
    scopes = NonNullList(graphene.String, description="What the role may do through this endpoint.")

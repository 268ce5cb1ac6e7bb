from __future__ import annotations

import graphene

from citycard.graphql.account import resolvers
from citycard.graphql.account.types import ApiKeyInfo, PlatformUser


class ApiKeyQueries(graphene.ObjectType):
    me = graphene.Field(ApiKeyInfo, required=True, description="The API key of this request: scopes, expiry.")

    @staticmethod
    def resolve_me(root, info):
        return resolvers.resolve_api_key(info)


class PlatformUserQueries(graphene.ObjectType):
    me = graphene.Field(
        PlatformUser, required=True, description="The signed-in platform user and their scopes."
    )

    @staticmethod
    def resolve_me(root, info):
        return resolvers.resolve_platform_user(info)

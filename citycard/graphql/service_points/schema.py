from __future__ import annotations

import graphene

from citycard.graphql.core.connection import connection_args
from citycard.graphql.core.permissions import PermissionsField
from citycard.graphql.service_points import resolvers
from citycard.graphql.service_points.types import ServicePointConnection, ServicePointFilterInput
from citycard.platform.scopes import Scope


class ServicePointQueries(graphene.ObjectType):
    service_points = PermissionsField(
        ServicePointConnection,
        permissions=[Scope.SERVICE_POINTS_READ],
        description="This tenant's open service points (服务网点) by code, with their departments.",
        **connection_args(filter=graphene.Argument(ServicePointFilterInput)),
    )

    @staticmethod
    def resolve_service_points(root, info, filter=None, **page):
        return resolvers.resolve_service_points(info, **dict(filter or {}), **page)

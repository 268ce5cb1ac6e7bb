from __future__ import annotations

import graphene

from citycard.graphql.core.connection import Connection
from citycard.graphql.core.types import NonNullList, global_id
from citycard.tenants.departments.models import DepartmentKind, ServiceKind

DepartmentKindEnum = graphene.Enum(
    "DepartmentKind", [(k.name, k.value) for k in DepartmentKind], description="What a department is."
)
ServiceKindEnum = graphene.Enum(
    "ServiceKind", [(k.name, k.value) for k in ServiceKind], description="A service a service point offers."
)


class Department(graphene.ObjectType):
    code = graphene.String(required=True)
    kind = graphene.Field(DepartmentKindEnum, required=True)
    name = graphene.String(required=True)

    @staticmethod
    def resolve_kind(root, info):
        return str(root.kind)


class ServicePoint(graphene.ObjectType):
    """A service window (服务网点/窗口): where, when, which services."""

    id = graphene.ID(required=True)
    code = graphene.String(required=True)
    name = graphene.String(required=True)
    address = graphene.String(required=True)
    hours = graphene.String(
        required=True, description="Opening hours as published, e.g. 周一至周五 8:30-17:00."
    )
    services = NonNullList(ServiceKindEnum)
    department = graphene.Field(Department, required=True)

    @staticmethod
    def resolve_id(root, info):
        return global_id("ServicePoint", root.code)

    @staticmethod
    def resolve_services(root, info):
        return list(root.services)


class ServicePointConnection(Connection):
    class Meta:
        node = ServicePoint


class ServicePointFilterInput(graphene.InputObjectType):
    department_kind = graphene.Field(DepartmentKindEnum, description="Only of departments of this kind.")
    service = graphene.Field(ServiceKindEnum, description="Only those offering this service.")
    text = graphene.String(description="Words that must all appear in the name, address or department name.")

"""Types shared by the domains of both endpoints."""

from __future__ import annotations

import graphene
from graphql_relay import to_global_id


class NonNullList(graphene.List):
    """``[T!]!``."""

    def __init__(self, of_type, **kwargs):
        kwargs.setdefault("required", True)
        super().__init__(graphene.NonNull(of_type), **kwargs)


def global_id(type_name: str, pk: object) -> str:
    """The opaque ``id`` of an object: base64 of ``<Type>:<pk>``, meaningful only on the same endpoint."""
    return to_global_id(type_name, str(pk))


def enum_value(value: object) -> object:
    """An enum argument's value (graphene passes enum members to resolvers)."""
    return getattr(value, "value", value)

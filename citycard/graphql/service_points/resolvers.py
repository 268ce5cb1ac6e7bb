"""Service point search for the tenant endpoint: thin over citycard.tenants.departments.selectors."""

from __future__ import annotations

from typing import Any

from graphene.utils.str_converters import to_camel_case

from citycard.graphql.core.connection import Key, keyset_page
from citycard.graphql.core.errors import ApiError, ApiErrorCode
from citycard.graphql.core.types import enum_value
from citycard.graphql.service_points.types import ServicePointConnection
from citycard.platform.errors import DomainError
from citycard.tenants.departments.selectors import service_points_search

SERVICE_POINT_KEYS = (Key("code"),)
TEXT_MAX = 100


def resolve_service_points(
    info: Any,
    *,
    department_kind: Any = None,
    service: Any = None,
    text: str | None = None,
    **page: Any,
) -> ServicePointConnection:
    if text is not None and len(text) > TEXT_MAX:
        raise ApiError(
            f"filter.text is {len(text)} characters; at most {TEXT_MAX}",
            ApiErrorCode.INVALID_ARGUMENT,
            argument="filter.text",
        )
    try:
        qs = service_points_search(
            department_kind=enum_value(department_kind), service=enum_value(service), text=text
        )
    except DomainError as exc:
        argument = f"filter.{to_camel_case(exc.field or '')}"
        raise ApiError(exc.message, ApiErrorCode.INVALID_ARGUMENT, argument=argument) from None
    return keyset_page(qs, connection_type=ServicePointConnection, keys=SERVICE_POINT_KEYS, **page)

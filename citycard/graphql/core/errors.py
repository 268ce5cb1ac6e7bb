"""Top-level error codes of both GraphQL endpoints, and the error that carries one.

Every error in a response's ``errors`` list has ``extensions.code`` (one of :class:`ApiErrorCode`). Errors
a mutation expects (bad input, refused business action) are not here: they are data, in the mutation's
own ``errors { field message code }`` with the mutation's own code enum (see mutations.py).
"""

from __future__ import annotations

import enum
from typing import Any

from graphql import GraphQLError


class ApiErrorCode(enum.StrEnum):
    # authentication (HTTP 401) and authorisation
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INVALID_TOKEN = "INVALID_TOKEN"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    WRONG_TENANT = "WRONG_TENANT"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    # protection
    RATE_LIMITED = "RATE_LIMITED"
    QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
    QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
    TOO_MANY_ALIASES = "TOO_MANY_ALIASES"
    TOO_MANY_OPERATIONS = "TOO_MANY_OPERATIONS"
    DOCUMENT_TOO_LARGE = "DOCUMENT_TOO_LARGE"
    TOO_MANY_TOKENS = "TOO_MANY_TOKENS"
    TOO_MANY_FIELDS = "TOO_MANY_FIELDS"
    TOO_MANY_REPEATED_FIELDS = "TOO_MANY_REPEATED_FIELDS"
    INTROSPECTION_DISABLED = "INTROSPECTION_DISABLED"
    # the request itself
    BAD_REQUEST = "BAD_REQUEST"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    # arguments
    PAGINATION_REQUIRED = "PAGINATION_REQUIRED"
    PAGINATION_LIMIT_EXCEEDED = "PAGINATION_LIMIT_EXCEEDED"
    INVALID_CURSOR = "INVALID_CURSOR"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class ApiError(GraphQLError):
    """A GraphQL error with ``extensions.code`` (and any further extensions)."""

    def __init__(self, message: str, code: ApiErrorCode, **extensions: Any) -> None:
        super().__init__(message, extensions={"code": str(code), **extensions})
        self.code = code


def error_dict(message: str, code: ApiErrorCode, **extensions: Any) -> dict[str, Any]:
    """An error as it appears in a response, for errors raised before execution."""
    return {"message": message, "extensions": {"code": str(code), **extensions}}

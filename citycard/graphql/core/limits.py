"""The limits of both endpoints, read from settings on every request (so tests and operators can change them),
and the two bounds applied to a document's text before it is parsed: its size and its number of tokens.

Every limit is a ``GRAPHQL_*`` setting with a ``CITYCARD_GRAPHQL_*`` environment variable
(citycard/platform/settings.py, docs/configuration.md); the defaults below are used when a setting is
absent.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from graphql import DocumentNode, GraphQLError, parse

from citycard.graphql.core.errors import ApiErrorCode

DEFAULTS = {
    "GRAPHQL_MAX_DEPTH": 8,
    "GRAPHQL_MAX_COST": 1000,
    "GRAPHQL_MAX_ALIASES": 15,
    "GRAPHQL_MAX_BATCH": 5,
    "GRAPHQL_MAX_BATCH_COST": 1000,
    "GRAPHQL_MAX_BODY_BYTES": 65_536,
    "GRAPHQL_MAX_DOCUMENT_BYTES": 16_384,
    "GRAPHQL_MAX_TOKENS": 2000,
    "GRAPHQL_MAX_FIELDS": 500,
    "GRAPHQL_MAX_FIELD_REPEATS": 10,
    "GRAPHQL_RATE_LIMIT": 600,
    "GRAPHQL_RATE_WINDOW_S": 60,
    "GRAPHQL_AUTH_FAILURES": 20,
    "GRAPHQL_AUTH_FAILURES_WINDOW_S": 600,
    "GRAPHQL_TRUSTED_PROXIES": 0,
}


def limit(name: str) -> int:
    return int(getattr(settings, name, DEFAULTS[name]))


def introspection_enabled() -> bool:
    return bool(getattr(settings, "GRAPHQL_INTROSPECTION", settings.DEBUG))


def graphiql_enabled() -> bool:
    return bool(getattr(settings, "GRAPHQL_GRAPHIQL", settings.DEBUG))


@dataclass(frozen=True)
class DocumentLimits:
    """The limits a document is parsed and checked under (part of the document cache's key: a document
    checked under other limits is checked again)."""

    max_tokens: int
    max_fields: int
    max_repeats: int
    max_depth: int
    max_aliases: int
    introspection: bool

    @classmethod
    def current(cls) -> DocumentLimits:
        return cls(
            max_tokens=limit("GRAPHQL_MAX_TOKENS"),
            max_fields=limit("GRAPHQL_MAX_FIELDS"),
            max_repeats=limit("GRAPHQL_MAX_FIELD_REPEATS"),
            max_depth=limit("GRAPHQL_MAX_DEPTH"),
            max_aliases=limit("GRAPHQL_MAX_ALIASES"),
            introspection=introspection_enabled(),
        )


def document_too_large(query: str) -> GraphQLError | None:
    """DOCUMENT_TOO_LARGE when the query text is longer than ``GRAPHQL_MAX_DOCUMENT_BYTES`` in UTF-8."""
    most = limit("GRAPHQL_MAX_DOCUMENT_BYTES")
    size = len(query) if len(query) * 4 <= most else len(query.encode("utf-8", "surrogatepass"))
    if size <= most:
        return None
    return GraphQLError(
        f"the query is {size} bytes; at most {most} are allowed",
        extensions={"code": str(ApiErrorCode.DOCUMENT_TOO_LARGE), "maxBytes": most},
    )


def document_parse(query: str, *, max_tokens: int) -> DocumentNode | GraphQLError:
    """The parsed document, or its syntax error. The lexer stops after ``max_tokens`` tokens (and as many
    comments), so a long document costs no more than that to refuse: TOO_MANY_TOKENS."""
    most = max_tokens
    try:
        return parse(query, max_lexical_tokens=most, max_comments=most)
    except GraphQLError as error:
        # graphql-core raises the same GraphQLSyntaxError for its limits as for bad syntax; only the message
        # tells them apart ("Document contains more than N tokens. Parsing aborted.", or "… comments. …").
        if "Parsing aborted." in error.message and "Document contains more than" in error.message:
            return GraphQLError(
                f"the query has more than {most} tokens (names, punctuation, values, comments); "
                f"at most {most} are allowed",
                extensions={"code": str(ApiErrorCode.TOO_MANY_TOKENS), "maxTokens": most},
            )
        return error

"""Scopes declared where a field or mutation is defined (``PermissionsField(..., permissions=[...])``,
mutation ``Meta.permissions``) and checked before its resolver runs.

A caller lacking a scope gets a ``PERMISSION_DENIED`` error naming the scopes it needs; the field
resolves to null (the rest of the query still runs). The scopes themselves are listed in one place:
citycard/platform/scopes.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import graphene

from citycard.graphql.core.errors import ApiError, ApiErrorCode


def principal_of(info: Any):
    return info.context.principal


def missing_scopes(info: Any, scopes: Iterable[str]) -> list[str]:
    granted = principal_of(info).scopes
    return [str(s) for s in scopes if str(s) not in granted]


def check_scopes(info: Any, scopes: Sequence[str]) -> None:
    """Raise PERMISSION_DENIED unless the caller holds every scope in ``scopes``."""
    missing = missing_scopes(info, scopes)
    if missing:
        raise ApiError(
            f"this needs the scope(s) {', '.join(missing)}, which the caller does not have",
            ApiErrorCode.PERMISSION_DENIED,
            required=[str(s) for s in scopes],
        )


def scopes_note(scopes: Sequence[str]) -> str:
    return f"Requires scope: {', '.join(str(s) for s in scopes)}." if scopes else ""


class PermissionsField(graphene.Field):
    """A field whose resolver runs only for a caller holding ``permissions`` (all of them)."""

    def __init__(self, type_: Any, *args: Any, permissions: Sequence[str], **kwargs: Any) -> None:
        if not permissions:
            raise ValueError(
                "PermissionsField needs at least one scope; use graphene.Field for public fields"
            )
        description = kwargs.pop("description", None) or ""
        kwargs["description"] = (description + "\n\n" if description else "") + scopes_note(permissions)
        super().__init__(type_, *args, **kwargs)
        self.permissions = tuple(str(p) for p in permissions)

    def wrap_resolve(self, parent_resolver: Any) -> Any:
        resolver = super().wrap_resolve(parent_resolver)
        permissions = self.permissions

        def resolve_with_scopes(root: Any, info: Any, **kwargs: Any) -> Any:
            check_scopes(info, permissions)
            return resolver(root, info, **kwargs)

        return resolve_with_scopes

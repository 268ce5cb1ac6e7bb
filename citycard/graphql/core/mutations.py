"""Mutations with errors as data (Saleor's habit).

A mutation subclasses :class:`BaseMutation`, declares ``Meta.permissions`` (scopes) and
``Meta.error_type_class`` (made by :func:`error_type` with the codes it may return), and implements
``perform_mutation``. A :class:`DomainError` raised by the service it calls becomes
``errors: [{field, message, code}]`` in the payload; the rest of the payload is then null. A missing scope
is not data but a top-level ``PERMISSION_DENIED`` error, as for queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import graphene
from django.db import transaction
from graphene.types.mutation import MutationOptions
from graphene.utils.str_converters import to_camel_case

from citycard.graphql.core.permissions import check_scopes, scopes_note
from citycard.platform.errors import DomainError

COMMON_CODES = ("INVALID", "NOT_FOUND")


def error_type(name: str, codes: Sequence[str], description: str = "") -> type[graphene.ObjectType]:
    """``<name>Error {field, message, code: <name>ErrorCode!}`` with ``codes`` (plus INVALID, NOT_FOUND)."""
    members = list(dict.fromkeys([c.upper() for c in codes] + list(COMMON_CODES)))
    enum = graphene.Enum(f"{name}ErrorCode", [(c, c) for c in members], description=f"Error codes of {name}.")
    attrs = {
        "field": graphene.String(description="The input field the error concerns (camelCase), if one."),
        "message": graphene.String(required=True, description="What is wrong, in one line."),
        "code": graphene.Field(enum, required=True),
        "Meta": type("Meta", (), {"description": description or f"An error of {name}."}),
    }
    error_class = type(f"{name}Error", (graphene.ObjectType,), attrs)
    error_class.code_values = frozenset(members)  # type: ignore[attr-defined]
    return error_class


class BaseMutationOptions(MutationOptions):
    permissions: tuple[str, ...] = ()
    error_type_class: Any = None


class BaseMutation(graphene.Mutation):
    # Service field names that the mutation's arguments call otherwise (e.g. ``{"card_no": "card_number"}``),
    # so an error names the argument the caller sent.
    error_fields: ClassVar[dict[str, str]] = {}

    class Meta:
        abstract = True

    @classmethod
    def __init_subclass_with_meta__(
        cls,
        permissions: Sequence[str] = (),
        error_type_class: Any = None,
        description: str = "",
        _meta: Any = None,
        **options: Any,
    ) -> None:
        if error_type_class is None:
            raise TypeError(f"{cls.__name__} needs Meta.error_type_class (made by error_type())")
        if not _meta:
            _meta = BaseMutationOptions(cls)
        _meta.permissions = tuple(str(p) for p in permissions)
        _meta.error_type_class = error_type_class
        cls.errors = graphene.List(
            graphene.NonNull(error_type_class),
            required=True,
            description="Why the mutation did nothing; empty when it succeeded.",
        )
        note = scopes_note(_meta.permissions)
        description = (description + "\n\n" if description else "") + note
        super().__init_subclass_with_meta__(description=description, _meta=_meta, **options)

    @classmethod
    def perform_mutation(cls, root: Any, info: Any, **data: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def mutate(cls, root: Any, info: Any, **data: Any) -> Any:
        check_scopes(info, cls._meta.permissions)
        try:
            with transaction.atomic():
                return cls.perform_mutation(root, info, **data)
        except DomainError as exc:
            return cls.error_response(exc)

    @classmethod
    def error_response(cls, exc: DomainError) -> Any:
        error_class = cls._meta.error_type_class
        code = (exc.code or "invalid").upper()
        if code not in error_class.code_values:
            code = "INVALID"
        field = to_camel_case(cls.error_fields.get(exc.field, exc.field)) if exc.field else None
        return cls(errors=[error_class(field=field, message=exc.message, code=code)])

    @staticmethod
    def actor(info: Any) -> str:
        return info.context.principal.actor

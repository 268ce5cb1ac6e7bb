"""Validation rules run before execution: depth, aliases, introspection. Each error carries its code.

graphene ships ``depth_limit_validator``, but its errors have no ``extensions.code``; these small rules
do the same walk (fragments followed, introspection fields not counted) and say which limit was hit.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

from citycard.graphql.core.errors import ApiErrorCode


def _depth(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> int:
    if selection_set is None:
        return 0
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue
            deepest = max(deepest, 1 + _depth(selection.selection_set, fragments, seen))
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, _depth(selection.selection_set, fragments, seen))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in seen or name not in fragments:
                continue  # cycles and unknown fragments are reported by the standard rules
            deepest = max(deepest, _depth(fragments[name].selection_set, fragments, seen | {name}))
    return deepest


def depth_limit_rule(max_depth: int) -> type[ValidationRule]:
    class DepthLimit(ValidationRule):
        def enter_document(self, node: Any, *_: Any) -> None:
            context: ValidationContext = self.context
            fragments = {d.name.value: d for d in node.definitions if isinstance(d, FragmentDefinitionNode)}
            for definition in node.definitions:
                if isinstance(definition, OperationDefinitionNode):
                    depth = _depth(definition.selection_set, fragments)
                    if depth > max_depth:
                        name = definition.name.value if definition.name else "anonymous"
                        context.report_error(
                            GraphQLError(
                                f"operation {name!r} is {depth} levels deep; at most {max_depth} are allowed",
                                definition,
                                extensions={"code": str(ApiErrorCode.QUERY_TOO_DEEP), "maxDepth": max_depth},
                            )
                        )

    return DepthLimit


def alias_limit_rule(max_aliases: int) -> type[ValidationRule]:
    class AliasLimit(ValidationRule):
        def enter_document(self, node: Any, *_: Any) -> None:
            self.aliases = 0
            self.document = node

        def enter_field(self, node: FieldNode, *_: Any) -> None:
            if node.alias is not None:
                self.aliases += 1

        def leave_document(self, *_: Any) -> None:
            if self.aliases > max_aliases:
                self.context.report_error(
                    GraphQLError(
                        f"the document uses {self.aliases} aliases; at most {max_aliases} are allowed",
                        self.document,
                        extensions={"code": str(ApiErrorCode.TOO_MANY_ALIASES), "maxAliases": max_aliases},
                    )
                )

    return AliasLimit


class NoIntrospection(ValidationRule):
    """Refuse ``__schema`` and ``__type`` (``__typename`` stays allowed)."""

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        if node.name.value in ("__schema", "__type"):
            self.report_error(
                GraphQLError(
                    "introspection is disabled on this server; the schema is published in the repository",
                    node,
                    extensions={"code": str(ApiErrorCode.INTROSPECTION_DISABLED)},
                )
            )

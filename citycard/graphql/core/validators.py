"""Checks of a document before execution, each error with its code: the limits of its shape (fields,
repeats of one field, depth, aliases), measured after parsing and before the standard validation rules
run, and the introspection switch, a validation rule.

graphene ships ``depth_limit_validator``, but as a validation rule it runs only after the quadratic rules
have done their work, and its errors have no ``extensions.code``; this walk measures depth the same way
(fragments followed, introspection fields not counted) and says which limit was hit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    ExecutableDefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)

from citycard.graphql.core.errors import ApiErrorCode


def _merged_fields(
    selection_sets: list[SelectionSetNode], fragments: dict[str, FragmentDefinitionNode], reached: set[str]
) -> dict[str, list[FieldNode]]:
    """The fields of selection sets that execution merges into one, by response key: through inline
    fragments and fragment spreads, each fragment once (as graphql-core's ``collect_fields``)."""
    by_key: dict[str, list[FieldNode]] = {}
    spread: set[str] = set()
    stack = list(selection_sets)
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FieldNode):
                by_key.setdefault((selection.alias or selection.name).value, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                stack.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in spread or name not in fragments:
                    continue  # unknown fragments are reported by the standard rules
                spread.add(name)
                reached.add(name)
                stack.append(fragments[name].selection_set)
    return by_key


@dataclass
class DocumentShape:
    """What validation will have to walk: fields with fragments expanded where they are spread, the most
    fields sharing one response key in one merged selection set, the depth of each operation."""

    fields: int = 0
    repeats: int = 0
    repeated: str = ""
    depths: dict[str, tuple[int, OperationDefinitionNode]] = field(default_factory=dict)
    aliases: int = 0
    truncated: bool = False


def document_shape(document: DocumentNode, *, max_fields: int) -> DocumentShape:
    """Measure ``document`` without the schema, stopping once it has more than ``max_fields`` fields
    (``truncated``). Linear in the fields counted: each merged selection set is walked once, breadth first,
    so neither fragment cycles nor a fragment spread many times can make it loop or explode."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    shape = DocumentShape()
    reached: set[str] = set()

    def walk(root: SelectionSetNode) -> int:
        deepest = 0
        # (selection sets merged into one, depth of their parent, inside an introspection field)
        queue: list[tuple[list[SelectionSetNode], int, bool]] = [([root], 0, False)]
        while queue:
            sets, depth, introspection = queue.pop()
            for key, nodes in _merged_fields(sets, fragments, reached).items():
                shape.fields += len(nodes)
                if shape.fields > max_fields:
                    shape.truncated = True
                    return deepest
                if len(nodes) > shape.repeats:
                    shape.repeats, shape.repeated = len(nodes), key
                # Introspection fields are not counted in the depth (as graphene's depth limit does).
                inside = introspection or nodes[0].name.value.startswith("__")
                below = depth if inside else depth + 1
                deepest = max(deepest, below)
                children = [node.selection_set for node in nodes if node.selection_set is not None]
                if children:
                    queue.append((children, below, inside))
        return deepest

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            name = definition.name.value if definition.name else "anonymous"
            shape.depths[name] = (walk(definition.selection_set), definition)
            if shape.truncated:
                return shape
    # Validation walks the fragments no operation spreads too.
    for name, fragment in fragments.items():
        if name not in reached:
            walk(fragment.selection_set)
            if shape.truncated:
                return shape
    shape.aliases = sum(1 for node in _field_nodes(document) if node.alias is not None)
    return shape


def _field_nodes(document: DocumentNode) -> Iterator[FieldNode]:
    """Every field of the document as written (a fragment's fields once)."""
    stack = [d.selection_set for d in document.definitions if isinstance(d, ExecutableDefinitionNode)]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FieldNode):
                yield selection
            if getattr(selection, "selection_set", None) is not None:
                stack.append(selection.selection_set)


def document_limits_errors(
    document: DocumentNode, *, max_depth: int, max_aliases: int, max_fields: int, max_repeats: int
) -> list[GraphQLError]:
    """The limits a document breaks, checked after parsing and before validation: validation is quadratic in
    the fields sharing a response key (OverlappingFieldsCanBeMerged compares every pair, fragments
    expanded: 500 × ``me { keyId }`` take half a second), so those are bounded first."""
    shape = document_shape(document, max_fields=max_fields)
    if shape.truncated:
        return [
            GraphQLError(
                f"the document selects more than {max_fields} fields (a fragment counted wherever it is "
                f"spread); at most {max_fields} are allowed",
                document,
                extensions={"code": str(ApiErrorCode.TOO_MANY_FIELDS), "maxFields": max_fields},
            )
        ]
    errors = []
    if shape.repeats > max_repeats:
        errors.append(
            GraphQLError(
                f"{shape.repeated!r} is selected {shape.repeats} times in one selection set (fragments "
                f"included); at most {max_repeats} are allowed",
                document,
                extensions={"code": str(ApiErrorCode.TOO_MANY_REPEATED_FIELDS), "maxRepeats": max_repeats},
            )
        )
    for name, (depth, definition) in shape.depths.items():
        if depth > max_depth:
            errors.append(
                GraphQLError(
                    f"operation {name!r} is {depth} levels deep; at most {max_depth} are allowed",
                    definition,
                    extensions={"code": str(ApiErrorCode.QUERY_TOO_DEEP), "maxDepth": max_depth},
                )
            )
    if shape.aliases > max_aliases:
        errors.append(
            GraphQLError(
                f"the document uses {shape.aliases} aliases; at most {max_aliases} are allowed",
                document,
                extensions={"code": str(ApiErrorCode.TOO_MANY_ALIASES), "maxAliases": max_aliases},
            )
        )
    return errors


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

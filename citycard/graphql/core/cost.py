"""Query cost, computed from the document before execution (Saleor's ``query_cost_map``, Shopify's
``extensions.cost``).

Each endpoint has a cost map ``{type name: {field name: FieldCost}}``. A field's cost is
``(complexity + cost of its selections) × multiplier``, the multiplier being the value of its ``first`` or
``last`` argument (literal or variable). Fields not in the map cost 1 if they return an object and 0 if a
scalar; the ``edges``/``node``/``pageInfo`` plumbing of connections costs nothing, so a page costs
per node. Introspection is free. Every response reports
``extensions.cost {requestedQueryCost, maximumAvailable}``; a query above the maximum is refused with
``QUERY_TOO_COSTLY`` before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_leaf_type,
)


@dataclass(frozen=True)
class FieldCost:
    complexity: int = 1
    multipliers: tuple[str, ...] = ()


CostMap = Mapping[str, Mapping[str, FieldCost]]


def _argument(node: FieldNode, name: str, variables: Mapping[str, Any]) -> int | None:
    for argument in node.arguments or ():
        if argument.name.value != name:
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, VariableNode):
            found = variables.get(value.name.value)
            return found if isinstance(found, int) and not isinstance(found, bool) else None
    return None


def _is_plumbing(type_name: str) -> bool:
    return type_name.endswith("Connection") or type_name.endswith("Edge") or type_name == "PageInfo"


class _Walker:
    def __init__(self, schema: GraphQLSchema, cost_map: CostMap, fragments: dict, variables: Mapping) -> None:
        self.schema, self.cost_map, self.fragments, self.variables = schema, cost_map, fragments, variables

    def selection_cost(
        self, selection_set: SelectionSetNode | None, parent: Any, seen: frozenset[str]
    ) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field_cost(selection, parent, seen)
            elif isinstance(selection, InlineFragmentNode):
                target = parent
                if selection.type_condition is not None:
                    target = self.schema.get_type(selection.type_condition.name.value) or parent
                total += self.selection_cost(selection.selection_set, target, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue
                target = self.schema.get_type(fragment.type_condition.name.value) or parent
                total += self.selection_cost(fragment.selection_set, target, seen | {name})
        return total

    def field_cost(self, node: FieldNode, parent: Any, seen: frozenset[str]) -> int:
        name = node.name.value
        if name.startswith("__"):
            return 0
        fields = getattr(parent, "fields", None) or {}
        field_def = fields.get(name)
        if field_def is None:
            return 0
        named = get_named_type(field_def.type)
        spec = self.cost_map.get(parent.name, {}).get(name)
        if spec is not None:
            complexity = spec.complexity
        elif is_leaf_type(named) or _is_plumbing(parent.name):
            complexity = 0
        else:
            complexity = 1
        children = self.selection_cost(node.selection_set, named, seen)
        multiplier = 1
        if spec is not None:
            for argument in spec.multipliers:
                value = _argument(node, argument, self.variables)
                if value is not None:
                    multiplier = max(multiplier, value)
        return (complexity + children) * multiplier


def query_cost(
    *,
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None,
    cost_map: CostMap,
) -> int:
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root: GraphQLObjectType | None = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    walker = _Walker(schema, cost_map, fragments, variables or {})
    return walker.selection_cost(operation.selection_set, root, frozenset())

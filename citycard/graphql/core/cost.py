"""Query cost, computed from the document before execution (Saleor's ``query_cost_map``, Shopify's
``extensions.cost``).

Each endpoint has a cost map ``{type name: {field name: FieldCost}}``. A field's cost is
``(complexity + cost of its selections) × multiplier``, the multiplier being the value of its ``first`` or
``last`` argument as its resolver will get it (a literal, a variable coerced by graphql-core with its
default, or the argument's default). Fields not in the map cost 1 if they return an object and 0 if a
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
    GraphQLError,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    is_leaf_type,
)
from graphql.execution.values import get_argument_values, get_variable_values


@dataclass(frozen=True)
class FieldCost:
    complexity: int = 1
    multipliers: tuple[str, ...] = ()


CostMap = Mapping[str, Mapping[str, FieldCost]]


def variables_coerce(
    schema: GraphQLSchema, operation: OperationDefinitionNode, inputs: Mapping[str, Any] | None
) -> dict[str, Any] | list[GraphQLError]:
    """The operation's variables as its resolvers will get them, or the errors that refuse them: graphql-core's
    own coercion (what ``execute`` does before running anything), so defaults apply, ``100.0`` is the Int
    100, a single value is a one-item list and input objects are checked field by field."""
    return get_variable_values(
        schema, operation.variable_definitions or (), dict(inputs or {}), max_errors=50
    )


def _multiplier(field_def: GraphQLField, node: FieldNode, names: tuple[str, ...], variables: Mapping) -> int:
    """The largest of the field's ``names`` arguments, as the resolver will get them (literals, variables,
    argument defaults), or 1."""
    if not names:
        return 1
    try:
        values = get_argument_values(field_def, node, dict(variables))
    except GraphQLError:
        return 1  # execution refuses the field before its resolver runs
    multiplier = 1
    for name in names:
        argument = field_def.args.get(name)
        value = values.get((argument.out_name or name) if argument else name)
        if isinstance(value, int) and not isinstance(value, bool):
            multiplier = max(multiplier, value)
    return multiplier


def _is_plumbing(type_name: str) -> bool:
    return type_name.endswith("Connection") or type_name.endswith("Edge") or type_name == "PageInfo"


class _Walker:
    """Costs selection sets as execution collects them: fields sharing a response key are one field
    (executed once, their selections merged) and a fragment spread twice in a selection set counts once, so
    the walk is linear in the document and the cost is that of what runs."""

    def __init__(self, schema: GraphQLSchema, cost_map: CostMap, fragments: dict, variables: Mapping) -> None:
        self.schema, self.cost_map, self.fragments, self.variables = schema, cost_map, fragments, variables

    def selection_cost(self, selection_sets: list[SelectionSetNode], parent: Any) -> int:
        merged: dict[tuple[str, str], tuple[Any, list[FieldNode]]] = {}
        spread: set[str] = set()
        stack = [(selection_set, parent) for selection_set in selection_sets]
        while stack:
            selection_set, owner = stack.pop()
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    key = (owner.name, (selection.alias or selection.name).value)
                    merged.setdefault(key, (owner, []))[1].append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    target = owner
                    if selection.type_condition is not None:
                        target = self.schema.get_type(selection.type_condition.name.value) or owner
                    stack.append((selection.selection_set, target))
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.fragments.get(name)
                    if fragment is None or name in spread:
                        continue
                    spread.add(name)
                    target = self.schema.get_type(fragment.type_condition.name.value) or owner
                    stack.append((fragment.selection_set, target))
        return sum(self.field_cost(nodes, owner) for owner, nodes in merged.values())

    def field_cost(self, nodes: list[FieldNode], parent: Any) -> int:
        node = nodes[0]
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
        children = self.selection_cost([n.selection_set for n in nodes if n.selection_set], named)
        multiplier = _multiplier(field_def, node, spec.multipliers, self.variables) if spec else 1
        return (complexity + children) * multiplier


def query_cost(
    *,
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None,
    cost_map: CostMap,
) -> int:
    """The cost of ``operation`` with ``variables`` as :func:`variables_coerce` made them."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root: GraphQLObjectType | None = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    walker = _Walker(schema, cost_map, fragments, variables or {})
    return walker.selection_cost([operation.selection_set], root)

"""Text no field can take: NUL and the other C0 control characters (tab, CR and LF excepted) and lone UTF-16
surrogates, in any string a request carries, a string literal of the document or a variable's value.

PostgreSQL refuses NUL in text and psycopg cannot encode a lone surrogate, so either would surface as
``INTERNAL_ERROR`` from whichever resolver first stored or compared the string. Both are refused here, once,
before anything runs: ``INVALID_ARGUMENT`` naming the argument (and the variable that fed it), never a
check per resolver.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    ArgumentNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    GraphQLError,
    ListValueNode,
    Node,
    ObjectValueNode,
    OperationDefinitionNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    Visitor,
    visit,
)

from citycard.graphql.core.errors import ApiErrorCode

_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
MAX_ERRORS = 10


def invalid_character(text: str) -> str | None:
    """How ``text`` breaks the rule ("U+0000 at position 3"), or None when it is storable."""
    found = _INVALID.search(text)
    return None if found is None else f"U+{ord(found.group()):04X} at position {found.start()}"


def _error(message: str, nodes: Any = None, **extensions: Any) -> GraphQLError:
    return GraphQLError(
        f"{message}: send text without control characters (tab, CR and LF are allowed) or lone surrogates",
        nodes,
        extensions={"code": str(ApiErrorCode.INVALID_ARGUMENT), **extensions},
    )


def _leaves(value: ValueNode, path: str) -> Iterator[tuple[str, ValueNode]]:
    """The string literals and variables inside an argument's value, with their path in it."""
    stack: list[tuple[str, ValueNode]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, StringValueNode | VariableNode):
            yield where, node
        elif isinstance(node, ObjectValueNode):
            stack.extend((f"{where}.{f.name.value}", f.value) for f in node.fields)
        elif isinstance(node, ListValueNode):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(node.values))


class _Arguments(Visitor):
    """Every argument of the document's fields and directives, and the variables' default values."""

    def __init__(self) -> None:
        super().__init__()
        self.leaves: list[tuple[str, str, ValueNode]] = []  # (field or @directive, argument path, node)

    def enter_argument(
        self, node: ArgumentNode, _key: Any, _parent: Any, _path: Any, ancestors: list
    ) -> None:
        owner = next((a for a in reversed(ancestors) if isinstance(a, FieldNode | DirectiveNode)), None)
        name = (
            owner.name.value
            if isinstance(owner, FieldNode)
            else f"@{owner.name.value}"
            if isinstance(owner, DirectiveNode)
            else ""
        )
        self.leaves.extend((name, where, leaf) for where, leaf in _leaves(node.value, node.name.value))

    def enter_variable_definition(self, node: Node, *_: Any) -> None:
        default = getattr(node, "default_value", None)
        if default is not None:
            variable = f"${node.variable.name.value}"  # type: ignore[attr-defined]
            self.leaves.extend(("", where, leaf) for where, leaf in _leaves(default, variable))


def _arguments(document: DocumentNode) -> list[tuple[str, str, ValueNode]]:
    visitor = _Arguments()
    visit(document, visitor)
    return visitor.leaves


def document_text_errors(document: DocumentNode) -> list[GraphQLError]:
    """INVALID_ARGUMENT for each string literal (``"\\u0000"`` is valid GraphQL) that no field can take."""
    errors = []
    for field, argument, node in _arguments(document):
        if isinstance(node, StringValueNode) and (bad := invalid_character(node.value)) is not None:
            where = f"argument {argument} of {field}" if field else f"the default of {argument}"
            errors.append(_error(f"{where} contains {bad}", node, argument=argument))
            if len(errors) == MAX_ERRORS:
                break
    return errors


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON value (object keys too), with its path; iterative, as JSON may nest deeply."""
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, Mapping):
            for key, inner in item.items():
                yield f"{where} (a key)", str(key)
                stack.append((f"{where}.{key}", inner))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", inner) for i, inner in enumerate(item))


def variables_text_errors(
    document: DocumentNode, operation: OperationDefinitionNode, variables: Mapping[str, Any] | None
) -> list[GraphQLError]:
    """INVALID_ARGUMENT for each string in the variables that no field can take, naming the variable and
    the argument it is given to."""
    if not variables:
        return []
    fed: dict[str, tuple[str, str]] = {}  # variable → (argument, field) of its first use
    for field, argument, node in _arguments(document):
        if isinstance(node, VariableNode):
            fed.setdefault(node.name.value, (argument, field))
    declared = {d.variable.name.value for d in operation.variable_definitions or ()}
    errors = []
    for name, value in variables.items():
        if name not in declared:
            continue  # graphql-core ignores variables the operation does not declare
        for where, text in _strings(value, f"${name}"):
            bad = invalid_character(text)
            if bad is None:
                continue
            argument, field = fed.get(name, (f"${name}", ""))
            given = f" (given to argument {argument} of {field})" if field else ""
            errors.append(_error(f"variable {where}{given} contains {bad}", argument=argument, variable=name))
            if len(errors) == MAX_ERRORS:
                return errors
    return errors

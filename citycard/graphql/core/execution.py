"""The execution context: graphql-sync-dataloaders' ``DeferredExecutionContext``, adapted to graphql-core
3.2.14, whose ``handle_field_error`` takes the field's path (0.1.1 of the library calls it without)."""

from __future__ import annotations

from graphql import ExecutionContext, GraphQLError, GraphQLOutputType
from graphql.pyutils import Path
from graphql_sync_dataloaders import DeferredExecutionContext


def _path_of(error: GraphQLError) -> Path | None:
    path = None
    for key in error.path or ():
        path = Path(path, key, None)
    return path


class DataLoaderExecutionContext(DeferredExecutionContext):
    def handle_field_error(
        self, error: GraphQLError, return_type: GraphQLOutputType, path: Path | None = None
    ) -> None:
        return ExecutionContext.handle_field_error(
            self, error, return_type, path if path is not None else _path_of(error)
        )

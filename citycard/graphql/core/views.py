"""The view behind both ``/graphql/`` endpoints.

One request: authenticate (the endpoint's own way) → count it against the caller's rate limit →
parse the body (one operation, or a JSON list of at most ``GRAPHQL_MAX_BATCH``) → for each operation:
parse, validate (standard rules + depth, alias and introspection rules), compute its cost and refuse it
above ``GRAPHQL_MAX_COST``, execute it with graphql-sync-dataloaders' ``DeferredExecutionContext``
(mutations in a transaction) → write the access log of personal data read → answer JSON with
``extensions.cost`` (and ``extensions.rateLimit``) in every response.

GraphiQL is served on GET to browsers when ``GRAPHQL_GRAPHIQL`` is on (default: ``CITYCARD_DEBUG``);
introspection is allowed when ``GRAPHQL_INTROSPECTION`` is on (same default).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, ClassVar

import graphene
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views import View
from graphql import (
    ExecutionResult,
    GraphQLError,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)

from citycard.graphql.core.access import access_log_flush
from citycard.graphql.core.context import GraphQLContext, Principal
from citycard.graphql.core.cost import CostMap, query_cost
from citycard.graphql.core.errors import ApiErrorCode, error_dict
from citycard.graphql.core.execution import DataLoaderExecutionContext
from citycard.graphql.core.validators import NoIntrospection, alias_limit_rule, depth_limit_rule
from citycard.platform.errors import DomainError
from citycard.platform.services import RateDecision, rate_limit_hit

logger = logging.getLogger(__name__)

DEFAULTS = {
    "GRAPHQL_MAX_DEPTH": 8,
    "GRAPHQL_MAX_COST": 1000,
    "GRAPHQL_MAX_ALIASES": 15,
    "GRAPHQL_MAX_BATCH": 5,
    "GRAPHQL_RATE_LIMIT": 600,
    "GRAPHQL_RATE_WINDOW_S": 60,
}


def limit(name: str) -> int:
    return int(getattr(settings, name, DEFAULTS[name]))


def introspection_enabled() -> bool:
    return bool(getattr(settings, "GRAPHQL_INTROSPECTION", settings.DEBUG))


def graphiql_enabled() -> bool:
    return bool(getattr(settings, "GRAPHQL_GRAPHIQL", settings.DEBUG))


DOCUMENT_CACHE_SIZE = 500
DOCUMENT_CACHE_MAX_QUERY = 20_000


class Refusal(Exception):
    """A request refused before any operation runs: an HTTP status and one coded error."""

    def __init__(
        self, status: int, message: str, code: ApiErrorCode, headers: dict | None = None, **ext: Any
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.ext = (
            status,
            message,
            code,
            headers or {},
            ext,
        )

    def response(self, extensions: dict | None = None) -> JsonResponse:
        body: dict[str, Any] = {"errors": [error_dict(self.message, self.code, **self.ext)]}
        if extensions:
            body["extensions"] = extensions
        response = JsonResponse(body, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


class GraphQLAPIView(View):
    """Subclasses set ``schema`` and ``cost_map`` and implement :meth:`authenticate`."""

    schema: ClassVar[graphene.Schema]
    cost_map: ClassVar[CostMap] = {}
    _document_cache: ClassVar[dict[tuple, tuple[Any, list[dict[str, Any]]]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._document_cache = {}

    endpoint: ClassVar[str] = ""

    def authenticate(self, request: HttpRequest) -> Principal:
        """The caller, or :class:`Refusal` (401/403)."""
        raise NotImplementedError

    # --- HTTP -------------------------------------------------------------------------------------

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if graphiql_enabled() and "text/html" in request.headers.get("Accept", ""):
            return self.graphiql(request)
        return Refusal(
            405, "send GraphQL operations with POST (application/json)", ApiErrorCode.BAD_REQUEST
        ).response()

    def graphiql(self, request: HttpRequest) -> HttpResponse:
        from graphene_django.views import GraphQLView

        page = GraphQLView
        return render(
            request,
            page.graphiql_template,
            {
                "whatwg_fetch_version": page.whatwg_fetch_version,
                "whatwg_fetch_sri": page.whatwg_fetch_sri,
                "react_version": page.react_version,
                "react_sri": page.react_sri,
                "react_dom_sri": page.react_dom_sri,
                "graphiql_version": page.graphiql_version,
                "graphiql_sri": page.graphiql_sri,
                "graphiql_css_sri": page.graphiql_css_sri,
                "subscriptions_transport_ws_version": page.subscriptions_transport_ws_version,
                "subscriptions_transport_ws_sri": page.subscriptions_transport_ws_sri,
                "graphiql_plugin_explorer_version": page.graphiql_plugin_explorer_version,
                "graphiql_plugin_explorer_sri": page.graphiql_plugin_explorer_sri,
                "graphiql_plugin_explorer_css_sri": page.graphiql_plugin_explorer_css_sri,
                "subscription_path": None,
                "graphiql_header_editor_enabled": True,
                "graphiql_should_persist_headers": False,
                "graphiql_input_value_deprecation": False,
            },
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            principal = self.authenticate(request)
            operations, batched = self._operations(request)
            decision = self._count(principal, len(operations))
        except Refusal as refusal:
            return refusal.response(
                {"cost": {"requestedQueryCost": 0, "maximumAvailable": limit("GRAPHQL_MAX_COST")}}
            )
        rate = {
            "limit": decision.limit,
            "remaining": decision.remaining,
            "resetAt": decision.reset_at.isoformat(),
        }
        context = GraphQLContext(request=request, principal=principal)
        answers = [self._answer(context, operation, rate) for operation in operations]
        access_log_flush(context)
        if batched:
            return JsonResponse([body for body, _ in answers], safe=False, status=200)
        body, status = answers[0]
        return JsonResponse(body, status=status)

    def _operations(self, request: HttpRequest) -> tuple[list[dict[str, Any]], bool]:
        content_type = request.content_type or ""
        if content_type == "application/graphql":
            return [{"query": request.body.decode("utf-8", "replace")}], False
        if content_type != "application/json":
            raise Refusal(
                415, f"send application/json, not {content_type or 'nothing'}", ApiErrorCode.BAD_REQUEST
            )
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise Refusal(400, "the body is not valid JSON", ApiErrorCode.BAD_REQUEST) from None
        if isinstance(data, dict):
            return [data], False
        if isinstance(data, list):
            most = limit("GRAPHQL_MAX_BATCH")
            if not data:
                raise Refusal(400, "an empty batch", ApiErrorCode.BAD_REQUEST)
            if len(data) > most:
                raise Refusal(
                    400,
                    f"the batch has {len(data)} operations; at most {most} are allowed",
                    ApiErrorCode.TOO_MANY_OPERATIONS,
                    maxOperations=most,
                )
            if not all(isinstance(item, dict) for item in data):
                raise Refusal(
                    400, "every operation of a batch must be a JSON object", ApiErrorCode.BAD_REQUEST
                )
            return data, True
        raise Refusal(400, "the body must be a JSON object (or a list of them)", ApiErrorCode.BAD_REQUEST)

    def _count(self, principal: Principal, operations: int) -> RateDecision:
        decision = rate_limit_hit(
            bucket=principal.rate_bucket,
            limit=limit("GRAPHQL_RATE_LIMIT"),
            window_s=limit("GRAPHQL_RATE_WINDOW_S"),
            weight=operations,
        )
        if not decision.allowed:
            retry = max(1, int((decision.reset_at - timezone.now()).total_seconds()) + 1)
            raise Refusal(
                429,
                f"more than {decision.limit} operations in {limit('GRAPHQL_RATE_WINDOW_S')} s; retry after {retry} s",
                ApiErrorCode.RATE_LIMITED,
                headers={"Retry-After": str(retry)},
                resetAt=decision.reset_at.isoformat(),
            )
        return decision

    # --- one operation ----------------------------------------------------------------------------

    def rules(self) -> list:
        rules = [
            *specified_rules,
            depth_limit_rule(limit("GRAPHQL_MAX_DEPTH")),
            alias_limit_rule(limit("GRAPHQL_MAX_ALIASES")),
        ]
        if not introspection_enabled():
            rules.append(NoIntrospection)
        return rules

    def _checked(self, query: str) -> tuple[Any, list[dict[str, Any]]]:
        """The parsed document and its validation errors, cached per query text and limits (clients send
        the same few queries over and over: parsing and validating them again would dominate small ones)."""
        key = (
            query,
            limit("GRAPHQL_MAX_DEPTH"),
            limit("GRAPHQL_MAX_ALIASES"),
            introspection_enabled(),
        )
        cache = self._document_cache
        found = cache.get(key)
        if found is not None:
            return found
        try:
            document = parse(query)
        except GraphQLError as exc:
            found = (None, [_coded(exc, ApiErrorCode.GRAPHQL_PARSE_FAILED)])
        else:
            errors = validate(self.schema.graphql_schema, document, self.rules())
            found = (document, [_coded(e, ApiErrorCode.GRAPHQL_VALIDATION_FAILED) for e in errors])
        if len(query) <= DOCUMENT_CACHE_MAX_QUERY:
            if len(cache) >= DOCUMENT_CACHE_SIZE:
                with contextlib.suppress(StopIteration, RuntimeError):  # another thread may be evicting
                    cache.pop(next(iter(cache)), None)
            cache[key] = found
        return found

    def _answer(self, context: GraphQLContext, data: dict[str, Any], rate: dict) -> tuple[dict, int]:
        maximum = limit("GRAPHQL_MAX_COST")
        extensions: dict[str, Any] = {
            "cost": {"requestedQueryCost": 0, "maximumAvailable": maximum},
            "rateLimit": rate,
        }

        def refused(errors: list[dict], status: int = 400) -> tuple[dict, int]:
            return {"errors": errors, "extensions": extensions}, status

        query, variables, operation_name = data.get("query"), data.get("variables"), data.get("operationName")
        if not isinstance(query, str) or not query.strip():
            return refused([error_dict("no query given", ApiErrorCode.BAD_REQUEST)])
        if variables is not None and not isinstance(variables, dict):
            return refused([error_dict("variables must be a JSON object", ApiErrorCode.BAD_REQUEST)])
        if operation_name is not None and not isinstance(operation_name, str):
            return refused([error_dict("operationName must be a string", ApiErrorCode.BAD_REQUEST)])
        schema = self.schema.graphql_schema
        document, errors = self._checked(query)
        if document is None:
            return refused(errors)
        if errors:
            return refused(errors)
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            message = (
                f"no operation named {operation_name!r}"
                if operation_name
                else "the document has several operations: name one with operationName"
            )
            return refused([error_dict(message, ApiErrorCode.BAD_REQUEST)])
        cost = query_cost(
            schema=schema, document=document, operation=operation, variables=variables, cost_map=self.cost_map
        )
        extensions["cost"]["requestedQueryCost"] = cost
        if cost > maximum:
            return refused(
                [
                    error_dict(
                        f"the query costs {cost}; at most {maximum} is allowed (ask for fewer items per page)",
                        ApiErrorCode.QUERY_TOO_COSTLY,
                        cost=cost,
                        maximumAvailable=maximum,
                    )
                ]
            )
        context.operation_name = operation.name.value if operation.name else None
        options = {
            "context_value": context,
            "variable_values": variables,
            "operation_name": operation_name,
            "execution_context_class": DataLoaderExecutionContext,
        }
        if operation.operation == OperationType.MUTATION:
            with transaction.atomic():
                result = execute(schema, document, **options)
        else:
            result = execute(schema, document, **options)
        assert isinstance(result, ExecutionResult)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [_format(error) for error in result.errors]
        body["extensions"] = extensions
        return body, 200


def _coded(error: GraphQLError, default: ApiErrorCode) -> dict[str, Any]:
    formatted = error.formatted
    extensions = dict(formatted.get("extensions") or {})
    extensions.setdefault("code", str(default))
    formatted["extensions"] = extensions
    return formatted


def _format(error: GraphQLError) -> dict[str, Any]:
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return _coded(
            error, ApiErrorCode.GRAPHQL_VALIDATION_FAILED if original is None else ApiErrorCode.BAD_REQUEST
        )
    if isinstance(original, DomainError):
        formatted = error.formatted
        formatted["extensions"] = {
            "code": original.code.upper(),
            **({"field": original.field} if original.field else {}),
        }
        return formatted
    logger.error("GraphQL resolver failed", exc_info=original)
    formatted = error.formatted
    if not settings.DEBUG:
        formatted["message"] = "internal error"
    formatted["extensions"] = {"code": str(ApiErrorCode.INTERNAL_ERROR)}
    return formatted

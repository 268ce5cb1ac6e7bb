"""The view behind both ``/graphql/`` endpoints.

One request: authenticate (the endpoint's own way; an address with too many failed authentications of a
key is refused before its key is checked: core/throttle.py) → count it against the caller's rate limit →
read the body (at most ``GRAPHQL_MAX_BODY_BYTES``: one operation, or a JSON list of at most
``GRAPHQL_MAX_BATCH``) → prepare each operation: its size, parse (at most ``GRAPHQL_MAX_TOKENS`` tokens),
the limits of its shape (fields, repeats, depth, aliases: checked before validation, whose work they
bound), its string literals, validation (standard rules and the introspection switch), its variables'
strings and their coercion by graphql-core, its cost, refused above ``GRAPHQL_MAX_COST`` → refuse a batch
costing more than ``GRAPHQL_MAX_BATCH_COST`` together → execute each with graphql-sync-dataloaders'
``DeferredExecutionContext`` (mutations in a transaction) → write the access log of personal data read →
answer JSON with ``extensions.cost`` (and ``extensions.rateLimit``) in every response.

GraphiQL is served on GET to browsers when ``GRAPHQL_GRAPHIQL`` is on (default: ``CITYCARD_DEBUG``);
introspection is allowed when ``GRAPHQL_INTROSPECTION`` is on (same default).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import graphene
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views import View
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    execute,
    get_operation_ast,
    print_ast,
    specified_rules,
    validate,
)

from citycard.graphql.core.access import access_log_flush
from citycard.graphql.core.context import GraphQLContext, Principal
from citycard.graphql.core.cost import CostMap, query_cost, variables_coerce
from citycard.graphql.core.errors import ApiErrorCode, error_dict
from citycard.graphql.core.execution import DataLoaderExecutionContext
from citycard.graphql.core.inputs import document_text_errors, variables_text_errors
from citycard.graphql.core.limits import (
    DocumentLimits,
    document_parse,
    document_too_large,
    graphiql_enabled,
    limit,
)
from citycard.graphql.core.validators import NoIntrospection, document_limits_errors
from citycard.platform.errors import DomainError
from citycard.platform.observability import metrics
from citycard.platform.observability.requests import request_note
from citycard.platform.services import RateDecision, rate_limit_hit

logger = logging.getLogger(__name__)

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
    _valid_documents: ClassVar[dict[tuple, bool]]  # printed documents found valid, and the limits

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._document_cache = {}
        cls._valid_documents = {}

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
        start = time.perf_counter()
        try:
            return self._post(request)
        finally:
            metrics.GRAPHQL_SECONDS.labels(self.endpoint).observe(time.perf_counter() - start)

    def _post(self, request: HttpRequest) -> HttpResponse:
        try:
            principal = self.authenticate(request)
            _note_caller(request, principal)
            operations, batched = self._operations(request)
            decision = self._count(principal, len(operations))
        except Refusal as refusal:
            request_note(request, outcome=str(refusal.code))
            metrics.GRAPHQL_OPERATIONS.labels(self.endpoint, str(refusal.code)).inc()
            return refusal.response(
                {"cost": {"requestedQueryCost": 0, "maximumAvailable": limit("GRAPHQL_MAX_COST")}}
            )
        rate = {
            "limit": decision.limit,
            "remaining": decision.remaining,
            "resetAt": decision.reset_at.isoformat(),
        }
        prepared = [self._prepare(operation) for operation in operations]
        if batched:
            refusal = _batch_too_costly(prepared)
            if refusal is not None:
                request_note(request, outcome=str(refusal.code))
                metrics.GRAPHQL_OPERATIONS.labels(self.endpoint, str(refusal.code)).inc(len(prepared))
                return refusal.response(
                    {
                        "cost": {
                            "requestedQueryCost": _runnable_cost(prepared),
                            "maximumAvailable": limit("GRAPHQL_MAX_BATCH_COST"),
                        },
                        "rateLimit": rate,
                    }
                )
        context = GraphQLContext(request=request, principal=principal)
        answers = [self._answer(context, operation, rate) for operation in prepared]
        access_log_flush(context)
        outcomes = [
            self._observe(operation, body) for operation, (body, _) in zip(prepared, answers, strict=True)
        ]
        request_note(request, outcome=next((o for o in outcomes if o != "ok"), "ok"))
        if batched:
            return JsonResponse([body for body, _ in answers], safe=False, status=200)
        body, status = answers[0]
        return JsonResponse(body, status=status)

    def _operations(self, request: HttpRequest) -> tuple[list[dict[str, Any]], bool]:
        most_bytes = limit("GRAPHQL_MAX_BODY_BYTES")
        declared = request.META.get("CONTENT_LENGTH") or ""
        # Refused on the declared length before the body is read, and on what was read when none is declared.
        if (declared.isdigit() and int(declared) > most_bytes) or len(request.body) > most_bytes:
            raise Refusal(
                413,
                f"the request body is larger than {most_bytes} bytes",
                ApiErrorCode.DOCUMENT_TOO_LARGE,
                maxBytes=most_bytes,
            )
        content_type = request.content_type or ""
        if content_type == "application/graphql":
            return [{"query": request.body.decode("utf-8", "replace")}], False
        if content_type != "application/json":
            raise Refusal(
                415, f"send application/json, not {content_type or 'nothing'}", ApiErrorCode.BAD_REQUEST
            )
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
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

    def _observe(self, prepared: Prepared, body: dict[str, Any]) -> str:
        """The operation's cost (when it ran) and outcome in the metrics; its outcome: ok or its first
        error's code."""
        if not prepared.errors and prepared.operation is not None:
            metrics.GRAPHQL_COST.labels(self.endpoint).observe(prepared.cost)
        errors = body.get("errors") or []
        outcome = "ok"
        if errors:
            outcome = str(((errors[0] or {}).get("extensions") or {}).get("code") or "error")
        metrics.GRAPHQL_OPERATIONS.labels(self.endpoint, outcome).inc()
        return outcome

    # --- one operation ----------------------------------------------------------------------------

    def rules(self, introspection: bool) -> list:
        rules = list(specified_rules)
        if not introspection:
            rules.append(NoIntrospection)
        return rules

    def _checked(self, query: str) -> tuple[Any, list[dict[str, Any]]]:
        """The parsed document and its errors, from parsing (at most ``GRAPHQL_MAX_TOKENS`` tokens), the
        limits of its shape (before validation: they bound its work), its string literals and validation.

        Cached per query text and limits: clients send the same few queries over and over, and parsing and
        validating them again would dominate small ones. A text not seen before is parsed (cheap, bounded)
        and its printed form, without comments and spacing, looked up among the documents already found
        valid, so a comment or a space does not buy a fresh validation."""
        limits = DocumentLimits.current()
        key = (query, limits)
        cache = self._document_cache
        found = cache.get(key)
        if found is not None:
            return found
        parsed = document_parse(query, max_tokens=limits.max_tokens)
        if isinstance(parsed, GraphQLError):
            found = (None, [_coded(parsed, ApiErrorCode.GRAPHQL_PARSE_FAILED)])
            _remember(cache, key, found, query)
            return found
        printed = (print_ast(parsed), limits)
        if printed in self._valid_documents:
            return parsed, []
        errors = document_limits_errors(
            parsed,
            max_depth=limits.max_depth,
            max_aliases=limits.max_aliases,
            max_fields=limits.max_fields,
            max_repeats=limits.max_repeats,
        ) or document_text_errors(parsed)
        if errors:
            found = (parsed, [_coded(e, ApiErrorCode.GRAPHQL_VALIDATION_FAILED) for e in errors])
        else:
            errors = validate(self.schema.graphql_schema, parsed, self.rules(limits.introspection))
            found = (parsed, [_coded(e, ApiErrorCode.GRAPHQL_VALIDATION_FAILED) for e in errors])
            if not errors:
                _remember(self._valid_documents, printed, True, query)
        _remember(cache, key, found, query)
        return found

    def _prepare(self, data: dict[str, Any]) -> Prepared:
        """One operation checked, parsed, validated, its variables coerced and its cost computed; or the
        errors that refuse it before it runs."""

        def refused(*errors: dict[str, Any]) -> Prepared:
            return Prepared(errors=list(errors))

        query, variables, operation_name = data.get("query"), data.get("variables"), data.get("operationName")
        if not isinstance(query, str) or not query.strip():
            return refused(error_dict("no query given", ApiErrorCode.BAD_REQUEST))
        if variables is not None and not isinstance(variables, dict):
            return refused(error_dict("variables must be a JSON object", ApiErrorCode.BAD_REQUEST))
        if operation_name is not None and not isinstance(operation_name, str):
            return refused(error_dict("operationName must be a string", ApiErrorCode.BAD_REQUEST))
        too_large = document_too_large(query)
        if too_large is not None:
            return refused(_coded(too_large, ApiErrorCode.DOCUMENT_TOO_LARGE))
        document, errors = self._checked(query)
        if document is None or errors:
            return refused(*errors)
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            message = (
                f"no operation named {operation_name!r}"
                if operation_name
                else "the document has several operations: name one with operationName"
            )
            return refused(error_dict(message, ApiErrorCode.BAD_REQUEST))
        text_errors = variables_text_errors(document, operation, variables)
        if text_errors:
            return refused(*(_coded(e, ApiErrorCode.INVALID_ARGUMENT) for e in text_errors))
        schema = self.schema.graphql_schema
        coerced = variables_coerce(schema, operation, variables)
        if isinstance(coerced, list):
            return refused(*(_variable_error(e) for e in coerced))
        cost = query_cost(
            schema=schema, document=document, operation=operation, variables=coerced, cost_map=self.cost_map
        )
        maximum = limit("GRAPHQL_MAX_COST")
        if cost > maximum:
            return Prepared(
                cost=cost,
                errors=[
                    error_dict(
                        f"the query costs {cost}; at most {maximum} is allowed (ask for fewer items per page)",
                        ApiErrorCode.QUERY_TOO_COSTLY,
                        cost=cost,
                        maximumAvailable=maximum,
                    )
                ],
            )
        return Prepared(
            document=document,
            operation=operation,
            operation_name=operation_name,
            variables=variables,
            cost=cost,
        )

    def _answer(self, context: GraphQLContext, prepared: Prepared, rate: dict) -> tuple[dict, int]:
        extensions: dict[str, Any] = {
            "cost": {"requestedQueryCost": prepared.cost, "maximumAvailable": limit("GRAPHQL_MAX_COST")},
            "rateLimit": rate,
        }
        if prepared.errors or prepared.operation is None:
            return {"errors": prepared.errors, "extensions": extensions}, 400
        operation = prepared.operation
        context.operation_name = operation.name.value if operation.name else None
        options = {
            "context_value": context,
            # The raw variables: execute coerces them exactly as variables_coerce did for the cost.
            "variable_values": prepared.variables,
            "operation_name": prepared.operation_name,
            "execution_context_class": DataLoaderExecutionContext,
        }
        schema = self.schema.graphql_schema
        if operation.operation == OperationType.MUTATION:
            with transaction.atomic():
                result = execute(schema, prepared.document, **options)
        else:
            result = execute(schema, prepared.document, **options)
        assert isinstance(result, ExecutionResult)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [_format(error) for error in result.errors]
        body["extensions"] = extensions
        return body, 200


def _note_caller(request: HttpRequest, principal: Principal) -> None:
    """Who called, by id, for the request's log line (a user's id is logged from the session itself)."""
    if principal.api_key is not None:
        request_note(request, api_key=principal.api_key.key_id)


@dataclass
class Prepared:
    """An operation ready to run (document, operation, its raw variables and cost), or refused (errors)."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    document: DocumentNode | None = None
    operation: OperationDefinitionNode | None = None
    operation_name: str | None = None
    variables: dict[str, Any] | None = None
    cost: int = 0


def _batch_too_costly(prepared: list[Prepared]) -> Refusal | None:
    """A batch runs only if its operations together cost at most ``GRAPHQL_MAX_BATCH_COST``: without the
    bound, a batch would buy ``GRAPHQL_MAX_BATCH`` times the work of the costliest operation allowed."""
    total, most = _runnable_cost(prepared), limit("GRAPHQL_MAX_BATCH_COST")
    if total <= most:
        return None
    return Refusal(
        400,
        f"the batch's operations cost {total} together; at most {most} is allowed (send fewer or smaller ones)",
        ApiErrorCode.QUERY_TOO_COSTLY,
        cost=total,
        maximumAvailable=most,
    )


def _runnable_cost(prepared: list[Prepared]) -> int:
    return sum(p.cost for p in prepared if not p.errors)


def _remember(cache: dict, key: Any, value: Any, query: str) -> None:
    if len(query) > DOCUMENT_CACHE_MAX_QUERY:
        return
    if len(cache) >= DOCUMENT_CACHE_SIZE:
        with contextlib.suppress(StopIteration, RuntimeError):  # another thread may be evicting
            cache.pop(next(iter(cache)), None)
    cache[key] = value


def _variable_error(error: GraphQLError) -> dict[str, Any]:
    """A variable graphql-core's coercion refuses, as execution would have refused it (its message and
    location), coded BAD_REQUEST (the code execution gave it) with the variable's name."""
    formatted = error.formatted
    match = re.match(r"Variable '\$(\w+)'", error.message)
    formatted["extensions"] = {
        "code": str(ApiErrorCode.BAD_REQUEST),
        **({"variable": match.group(1)} if match else {}),
    }
    return formatted


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

"""The web probe: every URL pattern of both URL configurations (a tenant's site and the platform's, the
admin's included) requested anonymously and as every role of the wrong site. Each must be refused
(a redirect to the sign-in form, 401, 403, 404 or 405) and no answer may carry the site's data (a card
number, a cardholder's name and ID number, a user name planted in it for the probe).

The patterns are enumerated from the URL resolvers, so a new URL is probed the day it is added. The only
ones open without a session are listed in ANONYMOUS below: each says how it authenticates or why it needs
nothing. A new ``login_not_required`` view fails the probe until it is listed here, with its reason. (Static
files are served by WhiteNoise before URL routing, from the apps' static folders: no URL pattern, no data.)
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern
from django_tenants.utils import schema_context, tenant_context

from citycard.platform import services
from citycard.platform.audit.services import audit_record
from citycard.platform.models import Role, User
from citycard.tenants.cards import services as cards
from citycard.tenants.cards.pii import id_number_build

pytestmark = pytest.mark.django_db

TENANT_URLS = "citycard.platform.urls"
PLATFORM_URLS = "citycard.platform.urls_public"
PASSWORD = "a-long-test-password"

# URL patterns open without a session, per URL configuration: why, and what they answer the probe
# (anonymous or with another site's session, GET and POST, no credentials of their own).
ANONYMOUS = {
    TENANT_URLS: {
        "healthz": ("liveness: no data", {200, 405}),
        "readyz": ("readiness: ok/down only", {200, 405}),
        ".well-known/citycard-keys.json": ("public keys only, signed by the platform's key", {200, 405}),
        "admin/login/": ("the sign-in form", {200}),
        "i18n/setlang/": (
            "the language switch: sets the language cookie, reads and shows nothing",
            {204, 302},
        ),
        "graphql/": ("partner apps: an API key of this tenant (Authorization: Bearer)", {401, 405}),
        "terminal/v1/batches": ("terminals: every batch signed with the terminal's Ed25519 key", {405, 415}),
        "terminal/v1/hotlist": (
            "terminals: every request signed with the terminal's Ed25519 key",
            {401, 405},
        ),
        "terminal/v1/entitlements": (
            "terminals: every request signed with the terminal's Ed25519 key",
            {401, 405},
        ),
        "terminal/v1/entitlement-uses": (
            "terminals: every batch of uses signed with the terminal's Ed25519 key",
            {405, 415},
        ),
        "terminal/v1/entitlement-check": (
            "terminals: every check signed with the terminal's Ed25519 key; the answer tenant-signed",
            {405, 415},
        ),
        "payments/notify/<slug:channel_code>": (
            "payment providers' notifications: each verified by the provider's signature; credits nothing else",
            {404, 405, 500},
        ),
    },
    PLATFORM_URLS: {
        "healthz": ("liveness: no data", {200, 405}),
        "readyz": ("readiness: ok/down only", {200, 405}),
        ".well-known/citycard-keys.json": ("public keys only, signed by the platform's key", {200, 405}),
        # The probe's test client comes from 127.0.0.1; a remote anonymous client is refused
        # (tests/platform/test_observability.py).
        "metrics": (
            "Prometheus: signed-in platform staff, or a client address in CITYCARD_METRICS_ALLOW (default"
            " loopback); counts and durations only, no data",
            {200, 405},
        ),
        "admin/login/": ("the sign-in form", {200}),
        "i18n/setlang/": (
            "the language switch: sets the language cookie, reads and shows nothing",
            {204, 302},
        ),
        "graphql/": ("clearing staff: a platform user's session or a platform API key", {401, 403, 405}),
    },
}
REFUSED = {401, 403, 404, 405}
# Planted names: unique enough never to appear by chance.
HOLDER_NAME = "探针甲乙"
SITE_USER = {"hangzhou": "probe-hz-admin-q7x", "tonglu": "probe-tl-officer-q7x", "public": "probe-op-q7x"}
SITE_OBJECT = {
    "hangzhou": "probe-hz-object-q7x",
    "tonglu": "probe-tl-object-q7x",
    "public": "probe-pf-object-q7x",
}


@dataclass(frozen=True)
class Route:
    pattern: str  # the whole pattern as written, e.g. "admin/platform/user/<path:object_id>/change/"
    parts: tuple  # its RoutePattern / RegexPattern pieces, outermost first
    name: str
    callback: object

    @property
    def anonymous(self) -> bool:
        return not getattr(self.callback, "login_required", True)


def routes(urlconf: str) -> list[Route]:
    def walk(patterns, parts: tuple, namespace: str) -> Iterator[Route]:
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
                yield from walk(p.url_patterns, (*parts, p.pattern), ns)
            elif isinstance(p, URLPattern):
                whole = (*parts, p.pattern)
                yield Route("".join(str(x) for x in whole), whole, f"{namespace}{p.name or ''}", p.callback)

    return list(walk(get_resolver(urlconf).url_patterns, (), ""))


def _model_of(route_name: str):
    """The model behind an admin URL name such as ``tenant_admin:cards_card_change``."""
    match = re.fullmatch(r"\w+:(\w+?)_(\w+)_(change|delete|history|password|add|changelist)", route_name)
    if not match:
        return None
    try:
        return apps.get_model(match.group(1), match.group(2))
    except LookupError:
        return None


def fill(route: Route, schema: str) -> str:
    """A concrete URL for ``route``: path parameters filled with the ids of real rows of the target site
    (so an unguarded page would show them), or dummy values where no row fits."""
    model = _model_of(route.name)

    def value(name: str, converter: str | None = None, regex: str = "") -> str:
        if name == "object_id" and model is not None:
            with schema_context(schema):
                pk = model._default_manager.order_by("pk").values_list("pk", flat=True).first()
            return str(pk if pk is not None else 1)
        if name == "content_type_id":
            return str(ContentType.objects.get_for_model(User).pk)
        if name == "object_id":
            return str(User.objects.get(username=SITE_USER[schema]).pk)
        if re.fullmatch(r"[\w|]+", regex):
            return regex.split("|")[0]  # one of the alternatives (an app label)
        if converter == "int" or regex in {r"\d+", "[0-9]+"}:
            return "1"
        return "probe"

    url = ""
    for part in route.parts:
        text = str(part)
        if isinstance(part, RoutePattern):
            url += re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: value(m.group(2), m.group(1)), text)
        elif isinstance(part, RegexPattern):
            text = text.removeprefix("^").removesuffix("$").removesuffix(r"\Z")
            text = re.sub(r"\(\?P<(\w+)>([^)]*)\)", lambda m: value(m.group(1), regex=m.group(2)), text)
            assert not re.search(r"[\^$*+?()\[\]{}|\\]", text), f"cannot fill {route.pattern!r}: {text!r}"
            url += text
        else:  # pragma: no cover - a new kind of pattern: teach fill() about it
            raise AssertionError(f"unknown pattern type {type(part).__name__} in {route.pattern!r}")
    return "/" + url


@pytest.fixture
def planted(tenant) -> dict[str, list[str]]:
    """Data the probe must never see, per site: in Hangzhou a cardholder and a card (lost: on the
    hotlist); on every site a user of its own and an audit entry (status.json lists the latest)."""
    id_number = id_number_build(division="330106", birth_date=dt.date(1979, 5, 4), sequence=917)
    with tenant_context(tenant("hangzhou")):
        cards.schemes_seed(actor="probe")
        holder = cards.cardholder_register(
            name=HOLDER_NAME, id_number=id_number, local_hukou=True, actor="probe"
        )
        card = cards.card_issue_now(scheme_code="01", cardholder_id=holder.pk, actor="probe")
        cards.card_report_lost(card_no=card.card_no, actor="probe")
    make = services.user_create
    make(username=SITE_USER["hangzhou"], role=Role.CITY_ADMIN, tenant_code="hangzhou", password=PASSWORD)
    make(username=SITE_USER["tonglu"], role=Role.COUNTY_OFFICER, tenant_code="tonglu", password=PASSWORD)
    make(username=SITE_USER["public"], role=Role.PLATFORM_OPERATOR, password=PASSWORD)
    for schema, object_id in SITE_OBJECT.items():
        with schema_context(schema):
            audit_record(action="probe.plant", actor="probe", object_id=object_id)
    return {
        "hangzhou": [card.card_no, HOLDER_NAME, id_number, SITE_USER["hangzhou"], SITE_OBJECT["hangzhou"]],
        "tonglu": [SITE_USER["tonglu"], SITE_OBJECT["tonglu"]],
        # The platform lists every user, a tenant's too: none of them for a caller from a tenant.
        "public": [*SITE_USER.values(), SITE_OBJECT["public"]],
    }


def _client(username: str | None, role: str | None = None, tenant_code: str | None = None) -> Client:
    client = Client()
    if username is not None:
        user = services.user_create(username=username, role=role, tenant_code=tenant_code, password=PASSWORD)
        client.force_login(user)
    return client


def _callers(site: str) -> dict[str, Client]:
    """Anonymous, and a user of every role that does not belong on ``site``."""
    callers = {"anonymous": _client(None)}
    if site == "public":
        callers["city_admin of hangzhou"] = _client("probe-hz", Role.CITY_ADMIN, "hangzhou")
        callers["county_officer of tonglu"] = _client("probe-tl", Role.COUNTY_OFFICER, "tonglu")
    elif site == "hangzhou":
        callers["city_admin of jiaxing"] = _client("probe-jx", Role.CITY_ADMIN, "jiaxing")
        callers["county_officer of tonglu (its county)"] = _client("probe-tl", Role.COUNTY_OFFICER, "tonglu")
        callers["platform_operator"] = _client("probe-op", Role.PLATFORM_OPERATOR)
        callers["clearing_staff"] = _client("probe-clr", Role.CLEARING_STAFF)
    else:  # a county's site: its own city's administrator does not belong there either
        callers["city_admin of hangzhou (its city)"] = _client("probe-hz", Role.CITY_ADMIN, "hangzhou")
    return callers


def _refusal_problem(response, open_answers: set[int] | None) -> str | None:
    status = response.status_code
    if open_answers is not None:  # open without a session: it must still answer as listed
        return None if status in open_answers else f"answered {status}, not one of {sorted(open_answers)}"
    if status in REFUSED:
        return None
    if status == 302 and response["Location"].startswith("/admin/login/"):
        return None
    return f"answered {status}" + (f" -> {response['Location']}" if status in {301, 302} else "")


@pytest.mark.parametrize(
    ("urlconf", "host", "schema"),
    [
        (TENANT_URLS, "hangzhou.localhost", "hangzhou"),
        (TENANT_URLS, "tonglu.localhost", "tonglu"),
        (PLATFORM_URLS, "localhost", "public"),
    ],
)
def test_every_url_refuses_anonymous_callers_and_every_wrong_site_role(planted, urlconf, host, schema):
    found = routes(urlconf)
    allowed = ANONYMOUS[urlconf]
    opened = {r.pattern for r in found if r.anonymous}
    assert opened == set(allowed), (
        "the URLs open without a session are not the ones listed in ANONYMOUS: "
        f"unlisted {sorted(opened - set(allowed))}, listed but gone or closed {sorted(set(allowed) - opened)}"
    )
    secrets = [s.encode() for s in planted[schema]]
    problems, covered = [], set()
    for who, client in _callers(schema).items():
        for route in found:
            url = fill(route, schema)
            assert resolve(url, urlconf=urlconf).func is route.callback, (
                f"{url} does not reach {route.pattern}"
            )
            for method in ("get", "post"):
                response = getattr(client, method)(url, HTTP_HOST=host)
                body = response.content
                open_answers = allowed[route.pattern][1] if route.anonymous else None
                problem = _refusal_problem(response, open_answers)
                leaked = [s.decode() for s in secrets if s in body]
                if leaked:
                    problem = f"{problem or 'answered ' + str(response.status_code)}, showing {leaked}"
                if problem:
                    problems.append(f"{method.upper()} {host}{url} as {who}: {problem}")
            covered.add(route.pattern)
    assert not problems, "\n".join(problems)
    assert covered == {r.pattern for r in found}


def test_the_probe_sees_the_planted_data_where_it_belongs(planted):
    """The probe would notice a leak: each site's own staff do see what was planted there."""
    card_no, holder_name, _id_number, hz_user, hz_object = planted["hangzhou"]
    hangzhou = Client()
    hangzhou.force_login(User.objects.get(username=hz_user))
    host = {"HTTP_HOST": "hangzhou.localhost"}
    assert hz_object.encode() in hangzhou.get("/status.json", **host).content
    assert card_no.encode() in hangzhou.get("/admin/cards/card/", **host).content
    assert holder_name.encode() in hangzhou.get("/admin/cards/cardholder/", **host).content
    assert hz_user.encode() in hangzhou.get("/admin/platform/user/", **host).content
    platform = Client()
    platform.force_login(User.objects.get(username=SITE_USER["public"]))
    users = platform.get("/admin/platform/user/", HTTP_HOST="localhost").content
    assert all(name.encode() in users for name in SITE_USER.values())
    assert SITE_OBJECT["public"].encode() in platform.get("/status.json", HTTP_HOST="localhost").content

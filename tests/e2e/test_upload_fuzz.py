"""The upload endpoint over real HTTP, fuzzed: whatever a client sends, no answer is a 5xx, every refusal
is JSON saying why (``code`` and ``message``) and writes nothing (every table of the tenant's schema and
of the public schema counted before and after), a signed batch with one bad tap costs only that tap, and
a batch sent three times at once from three clients gets the same bytes three times.

The project's WSGI application runs on a loopback port (wsgiref, a thread per request, as gunicorn's
threads would), so requests travel as bytes through a real server, with its headers and lengths. Its
threads work in the committed database: the tenant (Jinhua) and the terminals are made for this module.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import random
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.db import connection, connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.platform import keys, services
from citycard.platform.models import Tenant
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.terminal_kit.beijing import BEIJING
from tests.e2e.terminals import sim_terminal_register

HOST = "jinhua.localhost"
URL = "/terminal/v1/batches"
MiB = 1024 * 1024


# --- a real server ----------------------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the test says what went wrong
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    """The project's WSGI application (citycard.platform.wsgi) on 127.0.0.1, one thread per request."""
    from citycard.platform.wsgi import application as django_application

    def application(environ, start_response):
        try:
            return django_application(environ, start_response)
        finally:
            connections.close_all()  # this request's thread ends: so does its database connection

    httpd = make_server("127.0.0.1", 0, application, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address
    httpd.shutdown()
    httpd.server_close()


def send(address, body: bytes, *, content_type: str = "application/json", method: str = "POST"):
    """(status, headers, body) of one request on its own connection."""
    conn = http.client.HTTPConnection(*address, timeout=60)
    try:
        conn.request(method, URL, body=body, headers={"Host": HOST, "Content-Type": content_type})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# --- the tenant, its terminals, its tables --------------------------------------------------------


@pytest.fixture
def jinhua(committed_db) -> Tenant:
    """Jinhua, made once in the committed database, in the Yangtze Delta network (so Hangzhou's cards roam)."""
    tenant = Tenant.objects.filter(code="jinhua").first() or services.tenant_create(
        code="jinhua", division_code="330700", actor="test"
    )
    services.network_join(
        network_code="yrd", tenant_code="jinhua", joined_on=dt.date(2020, 1, 1), actor="test"
    )
    return tenant


@pytest.fixture
def sim(jinhua) -> SimTerminal:
    """A new terminal of Jinhua for each test (its examples share it: its sequence runs on from one to the next)."""
    return _terminal(jinhua)


def _terminal(tenant: Tenant) -> SimTerminal:
    return sim_terminal_register(
        tenant=tenant,
        terminal_id=f"JH-{uuid.uuid4().hex[:10]}",
        route="K1",
        terminal_no="330700000001",
        operator="金华公交",
    )


def _counts(tenant: Tenant) -> dict[str, Any]:
    """Rows of every table of the tenant's schema and of the public schema, and every terminal's mark."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT string_agg(format('SELECT %%L, count(*) FROM %%I.%%I', n.nspname || '.' || c.relname,"
            " n.nspname, c.relname), ' UNION ALL ')"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN (%s, 'public') AND c.relkind IN ('r', 'p')",
            [tenant.schema_name],
        )
        cur.execute(cur.fetchone()[0])
        counts: dict[str, Any] = dict(cur.fetchall())
        cur.execute(f'SELECT terminal_id, last_seq FROM "{tenant.schema_name}".terminals_terminal')
        counts["marks"] = dict(cur.fetchall())
    return counts


# --- what is sent -----------------------------------------------------------------------------------

_serials = iter(range(1, 10**9))


def _taps(sim: SimTerminal, n: int, roaming: int) -> list[dict]:
    """``n`` taps of new cards (so none of them was sent before), ``roaming`` of them Hangzhou's."""
    now = dt.datetime.now(BEIJING).replace(microsecond=0)
    return [
        sim.tap(
            SimCard(card_number("330100" if i < roaming else "330700", next(_serials))),
            at=now - dt.timedelta(minutes=i),
        )
        for i in range(n)
    ]


EDGES = [2**62, 2**63 - 1, 2**63, 2**64, -1, -(2**63), 10**39]
NUMBER_FIELDS = [
    "terminal_seq",
    "card_counter",
    "amount_fen",
    "balance_before_fen",
    "balance_after_fen",
    "algorithm",
]
ALL_FIELDS = [*NUMBER_FIELDS, "card_no", "issuer", "tapped_at", "tac", "terminal_no", "kind", "status", "service",
              "route", "card_scheme"]  # fmt: skip
WRONG = st.sampled_from([None, True, "", "12", [], {}, [1], {"a": 1}, "中文", "x" * 100])


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# Any offset Python reads: it also reads seconds and fractions, up to ±23:59:59.999999 (PostgreSQL does not).
DAY = dt.timedelta(hours=24)
offsets = st.timedeltas(
    min_value=-DAY + dt.timedelta(microseconds=1), max_value=DAY - dt.timedelta(microseconds=1)
)
# A change to one tap of a signed batch: the batch is answered 200 and the other taps are accepted.
tap_change = st.one_of(
    st.tuples(st.just("time"), st.just("tapped_at"), offsets),
    st.tuples(st.just("range"), st.sampled_from(NUMBER_FIELDS), st.sampled_from(EDGES)),
    st.tuples(st.just("type"), st.sampled_from(ALL_FIELDS), WRONG),
    st.tuples(st.just("missing"), st.sampled_from(ALL_FIELDS), st.none()),
    st.tuples(st.just("extra"), st.sampled_from(["note", "random", "Card_No"]), WRONG),
    # 28 deep in a tap is 32 in the body, the most it may nest (deeper: the body is refused, test below)
    st.tuples(st.just("nested"), st.sampled_from(ALL_FIELDS), st.integers(1, 28).map(_nested)),
    st.tuples(st.just("not a tap"), st.none(), st.sampled_from([None, 1, "tap", [], _nested(20)])),
    st.tuples(st.just("again"), st.none(), st.none()),  # the same tap twice: a duplicate
    st.tuples(st.just("conflict"), st.sampled_from(["amount_fen", "tac", "tapped_at", "route"]), st.none()),
)
# A change to the header of a signed batch: refused, nothing written.
header_change = st.tuples(
    st.sampled_from(
        ["batch_id", "terminal_id", "tenant", "created_at", "rule_version", "hotlist_version", "transactions"]
    ),
    st.one_of(
        WRONG,
        st.sampled_from(EDGES),
        st.just("9999-12-31T23:59:59-14:00"),
        st.just("x" * 81),
        offsets.map(lambda offset: dt.datetime.now(dt.timezone(offset)).isoformat()),
    ),
)
# A change to the bytes of a signed body: refused with this status and code (None: any 4xx).
BYTE_CHANGES = {
    "repeated key": (400, "malformed"),
    "deep": (400, "malformed"),
    "bad utf-8": (400, "malformed"),
    "lone surrogate": (400, "malformed"),
    "float": (400, "malformed"),
    "long integer": (400, "malformed"),
    "nul": (400, "malformed"),
    "truncated": (400, "malformed"),
    "oversize": (413, "too_large"),
    "not signed": (401, "unsigned"),
    "other signature": (401, "bad_signature"),
    "text/plain": (415, "unsupported_media_type"),
    "random bytes": None,
}
# The bytes change where a seeded Random says: the body's length varies from run to run (sequence numbers,
# times), which hypothesis's own draws must not depend on.
byte_change = st.tuples(st.sampled_from(sorted(BYTE_CHANGES)), st.integers(0, 2**32).map(random.Random))


def _change_tap(taps: list[dict], index: int, change: tuple) -> None:
    kind, field, value = change
    tap = taps[index]
    if kind in ("range", "type", "extra", "nested"):
        tap[field] = value
    elif kind == "time":  # the same instant, written with another offset
        tap[field] = dt.datetime.fromisoformat(tap[field]).astimezone(dt.timezone(value)).isoformat()
    elif kind == "missing":
        del tap[field]
    elif kind == "not a tap":
        taps[index] = value
    elif kind == "again":
        taps.append(dict(tap))
    elif kind == "conflict":  # the same natural key again, one field changed
        later = dt.datetime.fromisoformat(tap["tapped_at"]) + dt.timedelta(seconds=1)
        other = {
            "amount_fen": tap["amount_fen"] + 1,
            "tac": "00000000",
            "route": "K9",
            "tapped_at": later.isoformat(),
        }
        taps.append({**tap, field: other[field]})
        if field == "amount_fen":
            taps[-1]["balance_after_fen"] -= 1


def _change_bytes(body: bytes, kind: str, rng: random.Random) -> tuple[bytes, str]:
    """The body changed, and the content type to send it with."""
    at = rng.randrange(1, len(body))
    if kind == "repeated key":
        key = rng.choice([b'"payload":', b'"batch_id":', b'"amount_fen":', b'"key_id":', b'"transactions":'])
        start = body.index(key)
        return body[:start] + key + b"0," + body[start:], "application/json"
    if kind == "deep":
        depth = rng.choice([33, 600, 5000, 100_000])
        return b"[" * depth + body + b"]" * depth, "application/json"
    if kind == "bad utf-8":
        return body[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]) + body[
            at:
        ], "application/json"
    if kind == "lone surrogate":
        return body.replace(
            b'"bus"', rng.choice([b'"\\ud800"', b'"x\\udfffy"', b'"\\ud83d"']), 1
        ), "application/json"
    if kind == "float":
        return body.replace(
            b'"amount_fen":200', rng.choice([b'"amount_fen":200.0', b'"amount_fen":2e2']), 1
        ), ("application/json")
    if kind == "long integer":
        return body.replace(
            b'"amount_fen":200', b'"amount_fen":' + b"9" * rng.choice([41, 5000]), 1
        ), "application/json"
    if kind == "nul":
        return body.replace(b'"bus"', b'"b\\u0000s"', 1), "application/json"
    if kind == "truncated":
        return body[:at], "application/json"
    if kind == "oversize":
        return body[:-1] + b" " * (4 * MiB - len(body) + rng.randrange(1, 1000)) + b"}", "application/json"
    if kind == "not signed":
        return body[: body.index(b',"signature"')] + b"}", "application/json"
    if kind == "other signature":
        value = body.index(b'"value":"') + len(b'"value":"')
        flipped = b"A" if body[value : value + 1] != b"A" else b"B"
        return body[:value] + flipped + body[value + 1 :], "application/json"
    if kind == "text/plain":
        return body, "text/plain"
    return rng.randbytes(rng.choice([0, 1, 50, 5000])), "application/json"


def _refused(status: int, headers: dict, answer: bytes) -> dict:
    assert 400 <= status < 500, (status, answer[:300])
    assert headers["Content-Type"] == "application/json"
    error = json.loads(answer)["error"]
    assert type(error["code"]) is str and error["code"], error
    assert type(error["message"]) is str and error["message"], error
    return error


def _accepted(tenant: Tenant, status: int, answer: bytes) -> dict:
    assert status == 200, answer[:300]
    _, ack = keys.tenant_verify(tenant=tenant, document=json.loads(answer))
    return ack


# Bounded: each example is one request (tens of milliseconds) and two counts of every table.
FUZZ = settings(
    max_examples=80,
    deadline=dt.timedelta(seconds=10),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(change=tap_change, n=st.integers(1, 4), roaming=st.integers(0, 2), data=st.data())
def test_one_changed_tap_of_a_signed_batch_costs_at_most_that_tap(
    server, jinhua, sim, change, n, roaming, data
):
    taps = _taps(sim, n, roaming)
    index = data.draw(st.integers(0, n - 1))
    _change_tap(taps, index, change)
    before = _counts(jinhua)
    status, _, answer = send(server, sim.sign(sim.payload(taps, created_at=dt.datetime.now(BEIJING))))
    ack = _accepted(jinhua, status, answer)
    results = ack["results"]
    assert len(results) == len(taps)
    untouched = [r for i, r in enumerate(results[:n]) if i != index]
    assert all(r["outcome"] == "accepted" for r in untouched), results
    if change[0] in ("again", "conflict"):
        assert results[-1]["outcome"] == ("duplicate" if change[0] == "again" else "conflict"), results
    after = _counts(jinhua)
    new = (
        after[f"{jinhua.schema_name}.terminals_transaction"]
        - before[f"{jinhua.schema_name}.terminals_transaction"]
    )
    assert new == ack["accepted"]  # every tap taken is stored, and nothing else
    assert sum(1 for r in results if r["outcome"] in ("rejected", "conflict")) == ack["rejected"] + ack.get(
        "conflicts", 0
    )


@FUZZ
@given(change=header_change)
def test_a_changed_header_is_refused_and_writes_nothing(server, jinhua, sim, change):
    field, value = change
    payload = sim.payload(_taps(sim, 2, 1), created_at=dt.datetime.now(BEIJING))
    payload[field] = value
    before = _counts(jinhua)
    status, headers, answer = send(server, sim.sign(payload))
    if status == 200:  # a value that happens to be right: a batch id, a time, a list of taps
        assert (field, type(value)) in (("batch_id", str), ("created_at", str), ("transactions", list)), (
            field,
            value,
        )
        return
    error = _refused(status, headers, answer)
    after = _counts(jinhua)
    if error["code"] == "batch_conflict":  # a batch id sent before with other taps: refused and logged
        assert field == "batch_id"
        audit = f"{jinhua.schema_name}.audit_auditentry"
        assert after[audit] == before[audit] + 1
        after[audit] = before[audit]
    assert after == before


@FUZZ
@given(change=byte_change, n=st.integers(1, 3))
def test_a_changed_body_is_refused_with_its_reason_and_writes_nothing(server, jinhua, sim, change, n):
    kind, rng = change
    body = sim.sign(sim.payload(_taps(sim, n, 1), created_at=dt.datetime.now(BEIJING)))
    changed, content_type = _change_bytes(body, kind, rng)
    before = _counts(jinhua)
    status, headers, answer = send(server, changed, content_type=content_type)
    error = _refused(status, headers, answer)
    if BYTE_CHANGES[kind] is not None:
        assert (status, error["code"]) == BYTE_CHANGES[kind], (kind, error)
    assert _counts(jinhua) == before


@settings(max_examples=40, deadline=dt.timedelta(seconds=10), suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=3000), method=st.sampled_from(["POST", "POST", "PUT", "GET", "DELETE"]))
def test_random_bytes_never_get_a_5xx(server, jinhua, body, method):
    before = _counts(jinhua)
    status, headers, answer = send(server, body, method=method)
    _refused(status, headers, answer)
    assert _counts(jinhua) == before


@settings(max_examples=40, deadline=dt.timedelta(seconds=10), suppress_health_check=list(HealthCheck))
@given(
    query=st.one_of(
        st.text(max_size=30).map(lambda text: "since=" + quote(text)),
        st.integers(-(2**70), 2**70).map(lambda n: f"since={n}"),
        st.sampled_from(["since=" + "9" * 5000, "since=%C2%B2", "since=%00", "since=1&since=2", "since"]),
        st.binary(max_size=30).map(lambda raw: quote(raw.decode("latin-1"), safe="=&")),
    )
)
def test_the_hotlist_answers_any_query_with_a_list_or_a_json_refusal(server, jinhua, query):
    conn = http.client.HTTPConnection(*server, timeout=60)
    try:
        conn.request("GET", f"/terminal/v1/hotlist?{query}", headers={"Host": HOST})
        response = conn.getresponse()
        status, headers, answer = response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()
    if status == 200:
        assert keys.tenant_verify(tenant=jinhua, document=json.loads(answer))[1]["kind"] == "hotlist"
    elif status != 304:
        _refused(status, headers, answer)


def test_a_body_shorter_than_its_content_length_is_malformed(server, jinhua):
    with socket.create_connection(server, timeout=30) as sock:
        sock.sendall(
            f"POST {URL} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
            + b'{"payload":'
        )
        sock.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400") or head.startswith(b"HTTP/1.1 400"), head
    assert (
        json.loads(body)["error"]["message"]
        == "the body ended after 11 of the 1000 bytes its Content-Length declares"
    )


def test_every_batch_sent_three_times_at_once_gets_the_same_bytes_three_times(server, jinhua):
    """Twelve requests in flight together: four batches (accepted, rejected, repeated and conflicting
    taps, roaming and own cards, two terminals), each sent three times by three clients at once."""
    first, second = _terminal(jinhua), _terminal(jinhua)
    stored = _taps(first, 2, 1)
    status, _, answer = send(server, first.sign(first.payload(stored, created_at=dt.datetime.now(BEIJING))))
    _accepted(jinhua, status, answer)
    now = dt.datetime.now(BEIJING)
    bodies = []
    for sim in (first, second, first, second):
        taps = _taps(sim, 5, 2)
        taps[1]["balance_after_fen"] += 1  # rejected: balance_mismatch
        taps.append(dict(taps[0]))  # repeated in this batch
        if sim is first:
            taps.append(
                {**stored[0], "amount_fen": 1, "balance_after_fen": stored[0]["balance_before_fen"] - 1}
            )
        bodies.append(sim.sign(sim.payload(taps, created_at=now)))
    requests = [body for body in bodies for _ in range(3)]
    random.Random(17).shuffle(requests)
    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(lambda body: (body, send(server, body)), requests))
    by_body: dict[bytes, set[bytes]] = {}
    for body, (status, _, answer) in answers:
        assert status == 200, answer[:300]
        by_body.setdefault(body, set()).add(answer)
    assert all(len(got) == 1 for got in by_body.values()) and len(by_body) == 4
    for body, (answer,) in by_body.items():
        assert send(server, body)[2] == answer  # and once more, later
        ack = _accepted(jinhua, 200, answer)
        outcomes = [r["outcome"] for r in ack["results"]]
        assert outcomes[:6] == ["accepted", "rejected", "accepted", "accepted", "accepted", "duplicate"]
        assert outcomes[6:] == (["conflict"] if len(outcomes) == 7 else [])

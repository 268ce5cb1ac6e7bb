"""Test session: a real PostgreSQL (the embedded one unless DATABASE_URL is set), migrated once, with
the platform and a set of tenants created once by cloning and shared by every test.

Tests marked ``django_db`` run inside a transaction that is rolled back. Never use
``transactional_db``: its flush would truncate the public schema (and the audit log refuses TRUNCATE).
A test that needs committed data (real workers, real servers) uses ``committed_db`` and creates its
own, uniquely named rows.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

# The real smart-card stack (pcscd, vpcd, the card inserter), one session-wide for every directory; PgBouncer
# in front of the test database (tests/pgbouncer.py).
pytest_plugins = ["tests.pcsc", "tests.pgbouncer"]

LOCALE_DIR = Path(__file__).resolve().parent.parent / "citycard" / "locale"

# (code, division) in creation order; cities before counties.
SESSION_TENANTS = [
    ("shanghai", "310000"),
    ("hangzhou", "330100"),
    ("jiaxing", "330400"),
    ("tonglu", "330122"),
    ("haiyan", "330424"),
    ("dongguan", "441900"),
    ("shenzhen", "440300"),
]
# Members since long before any fixed clock a test uses (terminal-kit tests tap on fixed dates).
SESSION_JOINED_ON = dt.date(2020, 1, 1)
SESSION_MEMBERSHIPS = [
    ("yrd", "shanghai"),
    ("yrd", "hangzhou"),
    ("yrd", "jiaxing"),
    ("gba", "dongguan"),
    ("gba", "shenzhen"),
]


def pytest_sessionstart(session) -> None:
    """The translation catalogues compiled as `make` compiles them (a bare `pytest` run too): each .mo built
    from its committed .po when missing or older. Without gettext's msgfmt nothing is built here and
    tests/platform/test_translations.py says to run `make messages`."""
    if shutil.which("msgfmt") is None:
        return
    terminal = LOCALE_DIR.parent / "terminal_kit" / "locale"  # citycard-terminal's own catalogue
    for po in [*LOCALE_DIR.glob("*/LC_MESSAGES/django.po"), *terminal.glob("*/LC_MESSAGES/*.po")]:
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            subprocess.run(["msgfmt", "--check", "-o", str(mo), str(po)], check=True)


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_keepdb):
    """The test database, created for every session (also one whose tests only use ``committed_db``)."""
    from django.test.utils import setup_databases, teardown_databases

    from citycard.platform import services
    from citycard.platform.models import Tenant

    with django_db_blocker.unblock():
        db_cfg = setup_databases(
            verbosity=request.config.option.verbose,
            interactive=False,
            aliases={"default"},
            serialized_aliases=set(),
            keepdb=django_db_keepdb,
        )
        services.platform_bootstrap()
        for code, division in SESSION_TENANTS:
            if not Tenant.objects.filter(code=code).exists():
                services.tenant_create(code=code, division_code=division, actor="test")
        for network, code in SESSION_MEMBERSHIPS:
            services.network_join(
                network_code=network, tenant_code=code, joined_on=SESSION_JOINED_ON, actor="test"
            )
    _broker_emptied()
    yield
    if not django_db_keepdb:
        with django_db_blocker.unblock():
            from django.db import connections

            connections.close_all()
            teardown_databases(db_cfg, verbosity=request.config.option.verbose)


def _broker_emptied() -> None:
    """The embedded broker, running and empty: tasks a killed worker left in it refer to an earlier
    session's database, and would otherwise be handed out again to this session's workers."""
    from django.conf import settings

    from citycard.platform import embedded_redis
    from citycard.platform.celery import broker_ensure_running

    if settings.EMBEDDED_BROKER_DIR is not None:
        broker_ensure_running()
        embedded_redis.flush(settings.EMBEDDED_BROKER_DIR)


def pytest_sessionfinish(session, exitstatus):
    """Stop the embedded PostgreSQL and broker if this session started them, so nothing outlives the run."""
    from citycard.platform import embedded_pg, embedded_redis

    embedded_pg.stop_if_started_here()
    embedded_redis.stop_if_started_here()


@pytest.fixture(autouse=True)
def _public_schema_between_tests():
    """Requests and tenant_context leave the shared connection on some schema; start each test on public."""
    yield
    from django.db import connection

    if getattr(connection, "schema_name", "public") != "public":
        connection.set_schema_to_public()


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the default language (zh-hans) and leaves none behind: a request with another
    Accept-Language, or a command run with ``--lang en``, activates its language in the thread, and a later
    test would otherwise read whatever an earlier one left. A test that reads English says so (``english``)."""
    from django.conf import settings
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _terminal_checks_inline(settings):
    """Uploads run the stored-data checks before they answer, so a test sees a batch's flags at once;
    tests of the verification stage set ``settings.TERMINAL_VERIFY = "deferred"`` themselves."""
    settings.TERMINAL_VERIFY = "inline"


@pytest.fixture
def english():
    """The test reads English: for tests of what a refusal or a command says, written against the English
    source text (docs/configuration.md, "Languages"; the default language is zh-hans, and
    tests/platform/test_chinese_everywhere.py and test_translations.py keep every string translated)."""
    from django.utils import translation

    with translation.override("en"):
        yield


@pytest.fixture
def committed_db(django_db_setup, django_db_blocker):
    """Database access outside the per-test transaction: what the test writes is committed."""
    from django.db import connection

    with django_db_blocker.unblock():
        connection.set_schema_to_public()
        yield
        connection.set_schema_to_public()


@pytest.fixture
def tenant(db):
    """Look up a session tenant by code: ``tenant('jiaxing')``."""
    from citycard.platform.models import Tenant

    return lambda code: Tenant.objects.get(code=code)

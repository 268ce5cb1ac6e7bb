"""infra/docker-compose.yml puts PgBouncer (transaction mode) between PostgreSQL and the web, worker and beat
services, with the settings the application's ``CITYCARD_DB_POOLING=transaction`` expects and the tests run
(citycard/platform/pgbouncer.py, tests/e2e/test_pgbouncer.py); ``migrate`` goes straight to PostgreSQL.

There is no docker here: the compose file is read as YAML (PyYAML when the environment has it, else Debian's
``python3-yaml`` through the system's Python), PgBouncer's ini with configparser, and the settings the
services' environment gives are read from a ``citycard`` process started with that environment."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from citycard.platform.pgbouncer import PgBouncer

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
POOLED = ("web", "worker", "beat")
SYSTEM_PYTHON = "/usr/bin/python3"
YAML_TO_JSON = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"


def _compose() -> dict:
    """infra/docker-compose.yml as data (anchors and merge keys resolved, as docker compose reads it)."""
    text = (INFRA / "docker-compose.yml").read_text()
    try:
        import yaml
    except ImportError:
        if not Path(SYSTEM_PYTHON).exists():
            pytest.skip("no YAML reader: pip install pyyaml, or apt-get install python3-yaml")
        found = subprocess.run(
            [SYSTEM_PYTHON, "-c", YAML_TO_JSON], input=text, capture_output=True, text=True, timeout=60
        )
        if found.returncode != 0 and "No module named 'yaml'" in found.stderr:
            pytest.skip("no YAML reader: pip install pyyaml, or apt-get install python3-yaml")
        assert found.returncode == 0, found.stderr
        return json.loads(found.stdout)
    return yaml.safe_load(text)


def _ini(text: str) -> configparser.ConfigParser:
    ini = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
    ini.read_string(text)
    return ini


def _options(line: str) -> dict[str, str]:
    """``host=postgres port=5432 …`` of a [databases] entry."""
    return dict(part.split("=", 1) for part in line.split())


@pytest.fixture(scope="module")
def compose() -> dict:
    return _compose()


def test_web_workers_and_beat_reach_postgresql_through_pgbouncer_and_migrate_goes_straight(compose):
    services = compose["services"]
    bouncer = services["pgbouncer"]
    assert bouncer["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert bouncer["healthcheck"]["test"] and (INFRA / bouncer["build"]["context"] / "Dockerfile").exists()
    ini = _ini((INFRA / "pgbouncer" / "pgbouncer.ini").read_text())
    for name in POOLED:
        env, depends = services[name]["environment"], services[name]["depends_on"]
        url = urlsplit(env["DATABASE_URL"])
        assert (url.hostname, url.port) == ("pgbouncer", int(ini["pgbouncer"]["listen_port"])), name
        assert env["CITYCARD_DB_POOLING"] == "transaction", name
        assert depends["pgbouncer"] == {"condition": "service_healthy"}, name
        # The database the URL names is one PgBouncer serves, on the postgres service, as that user.
        served = _options(ini["databases"][url.path.lstrip("/")])
        assert (served["host"], served["port"], served["dbname"]) == (
            "postgres",
            "5432",
            url.path.lstrip("/"),
        )
        assert (
            url.username
            == bouncer["environment"]["PGBOUNCER_USER"]
            == services["postgres"]["environment"]["POSTGRES_USER"]
        )
        assert url.password == bouncer["environment"]["PGBOUNCER_PASSWORD"]
    migrate = services["migrate"]["environment"]
    direct = urlsplit(migrate["DATABASE_URL"])
    assert (direct.hostname, direct.port, migrate["CITYCARD_DB_POOLING"]) == ("postgres", 5432, "off")
    assert "pgbouncer" not in services["migrate"]["depends_on"]
    # The rest of the environment is the same for every app service (one anchor).
    differ = ("DATABASE_URL", "CITYCARD_DB_POOLING")
    for name in POOLED:
        rest = {k: v for k, v in services[name]["environment"].items() if k not in differ}
        assert rest == {k: v for k, v in migrate.items() if k not in differ}, name


def test_pgbouncer_is_set_as_the_tests_run_it(compose):
    """Transaction pooling, nothing reset between clients, server connections started in UTC: the settings
    of the PgBouncer the tests start (citycard/platform/pgbouncer.py), with production's authentication."""
    shipped = _ini((INFRA / "pgbouncer" / "pgbouncer.ini").read_text())
    tested = _ini(PgBouncer(directory=Path("/nowhere"), server_host="postgres", server_port=5432).config())
    for key in (
        "pool_mode",
        "server_reset_query",
        "min_pool_size",
        "reserve_pool_size",
        "server_check_query",
    ):
        assert shipped["pgbouncer"][key] == tested["pgbouncer"][key], key
    assert (
        shipped["pgbouncer"]["pool_mode"] == "transaction"
        and shipped["pgbouncer"]["server_reset_query"] == ""
    )
    (tested_entry,) = tested["databases"].values()
    for line in shipped["databases"].values():
        assert _options(line)["timezone"] == _options(tested_entry)["timezone"] == "UTC"
    assert shipped["pgbouncer"]["auth_type"] == "scram-sha-256"  # the tests' loopback trusts; production not
    # The user list is written where the ini reads it, at start, from the service's environment.
    dockerfile = (INFRA / "pgbouncer" / "Dockerfile").read_text()
    assert shipped["pgbouncer"]["auth_file"] in dockerfile and "$PGBOUNCER_PASSWORD" in dockerfile
    assert "apt-get install" in dockerfile and " pgbouncer" in dockerfile  # Debian's package, as the tests'
    # Room for every client: gunicorn's processes × threads per web, the worker's pool, beat, scaled out.
    assert int(shipped["pgbouncer"]["max_client_conn"]) >= 1000
    assert int(shipped["pgbouncer"]["default_pool_size"]) < 300  # below the server's max_connections


def test_every_citycard_variable_of_the_compose_file_is_read_by_the_code_and_documented(compose):
    code = "\n".join(p.read_text() for p in (ROOT / "citycard").rglob("*.py"))
    documented = (ROOT / "docs" / "configuration.md").read_text()
    names = {
        name
        for service in compose["services"].values()
        for name in (service.get("environment") or {})
        if name.startswith("CITYCARD_")
    }
    assert "CITYCARD_DB_POOLING" in names
    for name in sorted(names):
        assert f'"{name}"' in code, f"{name} is set in docker-compose.yml but no code reads it"
        assert f"`{name}`" in documented, f"{name} is not in docs/configuration.md"


def test_the_web_services_environment_gives_the_transaction_pooling_settings(compose, tmp_path):
    """A ``citycard`` process started with web's environment (its required keys given) reads PgBouncer's
    address and the pooling settings: schema per transaction, no server-side cursors, no prepared statements,
    no connection kept between requests."""
    env = {k: str(v) for k, v in compose["services"]["web"]["environment"].items()}
    env = {
        k: (re.fullmatch(r"\$\{\w+:-(.*)\}", v).group(1) if v.startswith("${") and ":-" in v else v)
        for k, v in env.items()
    }
    env["CITYCARD_SECRET_KEY"] = "k" + os.urandom(40).hex()
    env["CITYCARD_MASTER_KEY"] = "prod1:" + __import__("base64").b64encode(os.urandom(32)).decode()
    script = (
        "import json; from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(json.dumps([d['HOST'], d['PORT'], d.get('TRANSACTION_POOLING'), d.get('DISABLE_SERVER_SIDE_CURSORS'),"
        " d['CONN_MAX_AGE'], s.TERMINAL_PREPARED_STATEMENTS]))"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
            f"'citycard.platform.settings'); django.setup(); {script}",
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CITYCARD_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["pgbouncer", 6432, True, True, 0, False]

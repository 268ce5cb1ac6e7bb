"""Production settings: with the documented production values `citycard check --deploy` has nothing to
say; without a real secret key or master key a production process refuses to start; with nothing set a
development machine still runs (each case in its own process: settings are read once, at start)."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

# The production values of docs/configuration.md ("Production"), with fresh keys.
PRODUCTION_ENV = {
    "CITYCARD_PRODUCTION": "on",
    "CITYCARD_SECRET_KEY": secrets.token_urlsafe(50),
    "CITYCARD_MASTER_KEY": "prod1:" + base64.b64encode(os.urandom(32)).decode(),
    "CITYCARD_BASE_DOMAIN": "citycard.example",
    "CITYCARD_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
    "CITYCARD_HSTS_SECONDS": "31536000",
    "CITYCARD_HSTS_INCLUDE_SUBDOMAINS": "on",
    "CITYCARD_HSTS_PRELOAD": "on",
    "CITYCARD_CSRF_TRUSTED_ORIGINS": "https://ops.citycard.example",
}


def _citycard(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "citycard.platform.cli", *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CITYCARD_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_has_no_warning_with_the_documented_production_values(tmp_path):
    result = _citycard(tmp_path, "check", "--deploy", **PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


def test_production_settings_are_what_the_variables_say(tmp_path):
    script = (
        "from django.conf import settings as s;"
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS,"
        " s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, s.SECURE_PROXY_SSL_HEADER,"
        " s.CSRF_TRUSTED_ORIGINS)"
    )
    result = _citycard(tmp_path, "shell", "-c", script, **PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "True True True 31536000 True True ('HTTP_X_FORWARDED_PROTO', 'https') "
        "['https://*.citycard.example', 'https://ops.citycard.example']"
    )


@pytest.mark.parametrize(
    ("change", "told"),
    [
        ({"CITYCARD_SECRET_KEY": ""}, "CITYCARD_PRODUCTION is on but CITYCARD_SECRET_KEY is not set"),
        (
            {"CITYCARD_SECRET_KEY": "change-me-in-production"},
            "CITYCARD_SECRET_KEY is too weak for production",
        ),
        ({"CITYCARD_SECRET_KEY": "x" * 60}, "CITYCARD_SECRET_KEY is too weak for production"),
        ({"CITYCARD_MASTER_KEY": ""}, "CITYCARD_PRODUCTION is on but CITYCARD_MASTER_KEY is not set"),
    ],
)
def test_production_refuses_to_start_without_a_real_secret_key_or_master_key(tmp_path, change, told):
    result = _citycard(tmp_path, "check", **{**PRODUCTION_ENV, **change})
    assert result.returncode == 2
    assert f"citycard: configuration error: {told}" in result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_development_runs_with_nothing_set_and_keeps_its_generated_secret_key(tmp_path):
    result = _citycard(tmp_path, "check")
    assert result.returncode == 0, result.stderr
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50
    assert _citycard(tmp_path, "check").returncode == 0
    assert (tmp_path / "secret_key").read_text() == key


COMPOSE = Path(__file__).resolve().parents[2] / "infra" / "docker-compose.yml"


def _compose_environment() -> dict[str, str]:
    """The app's environment in infra/docker-compose.yml: literal values and ``${VAR:-default}`` defaults;
    a required ``${VAR:?message}`` comes back as ``"?"``."""
    env = {}
    for name, value in re.findall(
        r"^ {4}(CITYCARD_\w+|DATABASE_URL|CELERY_\w+): (.*)$", COMPOSE.read_text(), re.M
    ):
        value = value.strip().strip('"')
        required = re.fullmatch(r"\$\{\w+:\?.*\}", value)
        default = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
        env[name] = "?" if required else (default.group(1) if default else value)
    return env


def test_compose_refuses_to_start_without_a_secret_key_and_a_master_key():
    env = _compose_environment()
    assert env["CITYCARD_SECRET_KEY"] == env["CITYCARD_MASTER_KEY"] == "?"
    text = COMPOSE.read_text()
    assert not re.search(r"^\s+SECRET_KEY:", text, re.M) and "change-me" not in text
    assert env["CITYCARD_PRODUCTION"] == "on"


def test_compose_defaults_pass_check_deploy(tmp_path):
    env = {
        k: v
        for k, v in _compose_environment().items()
        # The database settings (PgBouncer, pooling): tests/platform/test_compose_pgbouncer.py.
        if v != "?" and not k.startswith(("DATABASE", "CELERY", "CITYCARD_DB_"))
    }
    keys = {k: PRODUCTION_ENV[k] for k in ("CITYCARD_SECRET_KEY", "CITYCARD_MASTER_KEY")}
    result = _citycard(tmp_path, "check", "--deploy", **env, **keys)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout

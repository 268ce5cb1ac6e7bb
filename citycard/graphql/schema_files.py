"""The checked-in SDL of both endpoints (the API contract), printed from the code."""

from __future__ import annotations

from pathlib import Path

from graphql import print_schema

from citycard.graphql.api import platform_schema, tenant_schema

HERE = Path(__file__).resolve().parent
SCHEMA_FILES = {
    "tenant": (HERE / "schema_tenant.graphql", tenant_schema),
    "platform": (HERE / "schema_platform.graphql", platform_schema),
}


def schema_sdl(endpoint: str) -> str:
    return print_schema(SCHEMA_FILES[endpoint][1].graphql_schema) + "\n"


def schema_files_stale() -> list[Path]:
    """The files whose content differs from the code's schema."""
    stale = []
    for endpoint, (path, _) in SCHEMA_FILES.items():
        if not path.exists() or path.read_text(encoding="utf-8") != schema_sdl(endpoint):
            stale.append(path)
    return stale


def schema_files_write() -> list[Path]:
    written = []
    for endpoint, (path, _) in SCHEMA_FILES.items():
        text = schema_sdl(endpoint)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written

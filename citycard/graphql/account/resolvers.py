from __future__ import annotations

from typing import Any

from citycard.platform.models import ApiKey


def resolve_api_key(info: Any) -> ApiKey:
    return info.context.principal.api_key


def resolve_platform_user(info: Any) -> dict:
    principal = info.context.principal
    if principal.user is None:  # a platform API key
        return {"username": principal.actor, "role": "api_key", "scopes": sorted(principal.scopes)}
    return {
        "username": principal.user.username,
        "role": principal.user.role,
        "scopes": sorted(principal.scopes),
    }

"""Who may do what: role policies instead of per-user permission rows.

Each Django app may declare ``role_permissions`` on its AppConfig: a mapping of role to
``{"app_label.model": {"view", "add", "change", "delete"}}`` (``"app_label.*"`` covers every model of
the app). :class:`RoleBackend` answers ``user.has_perm`` from the union of those declarations, so a
role's rights are reviewed in code, next to the models they concern.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache

from django.apps import apps
from django.contrib.auth.backends import ModelBackend

ACTIONS = ("view", "add", "change", "delete")


@cache
def role_policy() -> dict[str, dict[str, frozenset[str]]]:
    merged: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for config in apps.get_app_configs():
        for role, grants in getattr(config, "role_permissions", {}).items():
            for target, actions in grants.items():
                unknown = set(actions) - set(ACTIONS)
                if unknown:
                    raise ValueError(f"{config.label}: unknown actions {sorted(unknown)} for {target}")
                merged[str(role)][target] |= set(actions)
    return {role: {t: frozenset(a) for t, a in grants.items()} for role, grants in merged.items()}


def role_allows(role: str, perm: str) -> bool:
    """Whether ``role`` grants Django permission ``perm`` ("app_label.action_model")."""
    try:
        app_label, codename = perm.split(".", 1)
        action, model = codename.split("_", 1)
    except ValueError:
        return False
    grants = role_policy().get(role, {})
    return action in grants.get(f"{app_label}.{model}", ()) or action in grants.get(f"{app_label}.*", ())


class RoleBackend(ModelBackend):
    """Password authentication as usual; permissions from the user's role."""

    def get_all_permissions(self, user_obj, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        perms = set()
        for target, actions in role_policy().get(getattr(user_obj, "role", ""), {}).items():
            app_label, model = target.split(".", 1)
            models = (
                [m._meta.model_name for m in apps.get_app_config(app_label).get_models()]
                if model == "*"
                else [model]
            )
            perms |= {f"{app_label}.{a}_{m}" for a in actions for m in models}
        return perms

    def has_perm(self, user_obj, perm, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous:
            return False
        return role_allows(getattr(user_obj, "role", ""), perm)

    def has_module_perms(self, user_obj, app_label):
        if not user_obj.is_active or user_obj.is_anonymous:
            return False
        grants = role_policy().get(getattr(user_obj, "role", ""), {})
        return any(target.split(".", 1)[0] == app_label for target in grants)

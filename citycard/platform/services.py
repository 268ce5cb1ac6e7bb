"""Platform actions: tenants, domains, roaming networks and users. One function per business action.

Each is transactional: a refused or failed action raises DomainError and leaves nothing behind (no
tenant row, no schema, no domain, no audit entry).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import schema_context, tenant_context

from citycard.platform.audit.services import audit_record
from citycard.platform.divisions import PROVINCE, Division, division_lookup
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.platform.keys import tenant_keys_ensure
from citycard.platform.models import (
    PLATFORM_ROLES,
    ApiKey,
    Domain,
    NetworkMembership,
    RateWindow,
    RoamingNetwork,
    Role,
    Tenant,
    TenantKind,
    TenantStatus,
    User,
)
from citycard.platform.scopes import PlatformScope, Scope
from citycard.platform.selectors import rate_window_start

TENANT_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,29}$")
RESERVED_CODES = frozenset(
    {"public", "platform", "template", "admin", "api", "www", "static", "graphql", "information_schema"}
)

# The roaming networks the platform runs and who may join them (by division-code prefix).
NETWORKS = {
    "yrd": {
        "name_zh": "长三角",
        "name_en": "Yangtze River Delta",
        # Shanghai, Jiangsu, Zhejiang, Anhui
        "eligible_prefixes": ["31", "32", "33", "34"],
    },
    "gba": {
        "name_zh": "粤港澳大湾区",
        "name_en": "Guangdong-Hong Kong-Macao Greater Bay Area",
        # Guangzhou, Shenzhen, Zhuhai, Foshan, Jiangmen, Zhaoqing, Huizhou, Dongguan, Zhongshan; HK; Macao
        "eligible_prefixes": [
            "4401",
            "4403",
            "4404",
            "4406",
            "4407",
            "4412",
            "4413",
            "4419",
            "4420",
            "81",
            "82",
        ],
    },
    "tunion": {
        "name_zh": "交通联合",
        "name_en": "T-Union (national)",
        # The mainland's cities (Hong Kong and Macao clear in their own schemes).
        "eligible_prefixes": ["1", "2", "3", "4", "5", "6"],
    },
}


def _today() -> dt.date:
    return timezone.localdate()


def tenant_domain_name(code: str) -> str:
    return f"{code}.{settings.BASE_DOMAIN}"


def tenant_get(code: str) -> Tenant:
    try:
        return Tenant.objects.get(code=code)
    except Tenant.DoesNotExist:
        raise NotFound(gettext("no tenant with code %(code)r") % {"code": code}, field="tenant") from None


# --------------------------------------------------------------------------------------------------
# The platform itself
# --------------------------------------------------------------------------------------------------


@transaction.atomic
def platform_bootstrap() -> Tenant:
    """Make sure the platform tenant, its domain and the roaming networks exist (idempotent)."""
    connection.set_schema_to_public()
    platform, _ = Tenant.objects.get_or_create(
        schema_name="public",
        defaults={
            "code": "public",
            "name_zh": "市民卡互联互通平台",
            "name_en": "CityCard Interop platform",
            "kind": TenantKind.PLATFORM,
        },
    )
    Domain.objects.update_or_create(
        tenant=platform, is_primary=True, defaults={"domain": settings.BASE_DOMAIN}
    )
    for code, spec in NETWORKS.items():
        RoamingNetwork.objects.update_or_create(code=code, defaults=spec)
    tenant_keys_ensure(tenant=platform)
    # Tenant domains follow the base domain if it changed since they were created.
    for tenant in Tenant.objects.exclude(kind=TenantKind.PLATFORM):
        Domain.objects.update_or_create(
            tenant=tenant, is_primary=True, defaults={"domain": tenant_domain_name(tenant.code)}
        )
    return platform


# --------------------------------------------------------------------------------------------------
# Tenants
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantPlan:
    code: str
    division: Division
    parent: Tenant | None


def tenant_check_new(*, code: str, division_code: str, parent_code: str | None = None) -> TenantPlan:
    """Everything tenant_create refuses, checked without writing anything."""
    code = (code or "").strip().lower()
    if not TENANT_CODE_RE.match(code):
        raise DomainError(
            gettext(
                "tenant code %(code)r is invalid: use 2-30 lowercase letters, digits or '_', starting with a letter"
            )
            % {"code": code},
            code="code_invalid",
            field="code",
        )
    if code in RESERVED_CODES:
        raise DomainError(
            gettext("tenant code %(code)r is reserved") % {"code": code}, code="code_reserved", field="code"
        )
    division = division_lookup(division_code)
    if division.kind == PROVINCE:
        raise DomainError(
            f"division {division.code} ({division.name_zh}) is a province: a tenant is a city or a county",
            code="division_province",
            field="division",
        )
    if Tenant.objects.filter(code=code).exists():
        raise Conflict(gettext("a tenant with code %(code)r already exists") % {"code": code}, field="code")
    holder = Tenant.objects.filter(division_code=division.code).first()
    if holder is not None:
        raise Conflict(
            gettext("division %(division)s (%(name)s) already belongs to tenant %(holder)r")
            % {"division": division.code, "name": division.name_zh, "holder": holder.code},
            field="division",
        )
    parent: Tenant | None = None
    if division.kind == TenantKind.COUNTY:
        parent = _county_parent(division=division, parent_code=parent_code)
    elif parent_code:
        raise DomainError(
            gettext("%(name_en)s (%(division)s) is a city: only a county has a parent city")
            % {"name_en": division.name_en, "division": division.code},
            code="parent_not_allowed",
            field="parent",
        )
    return TenantPlan(code=code, division=division, parent=parent)


def tenant_create(
    *,
    code: str,
    division_code: str,
    name_zh: str | None = None,
    name_en: str | None = None,
    parent_code: str | None = None,
    actor: str = "system",
) -> Tenant:
    """Create a city or county tenant: its row, its schema (cloned from the template) and its domain."""
    connection.set_schema_to_public()
    plan = tenant_check_new(code=code, division_code=division_code, parent_code=parent_code)
    code, division, parent = plan.code, plan.division, plan.parent

    try:
        with transaction.atomic():
            tenant = Tenant(
                schema_name=code,
                code=code,
                name_zh=(name_zh or division.name_zh).strip(),
                name_en=(name_en or division.name_en).strip(),
                division_code=division.code,
                province=division.province,
                kind=division.kind,
                parent=parent,
            )
            tenant.save()
            tenant.create_schema()
            Domain.objects.create(domain=tenant_domain_name(code), tenant=tenant, is_primary=True)
            tenant_keys_ensure(tenant=tenant)
            details = {
                "division_code": division.code,
                "kind": tenant.kind,
                "parent": parent.code if parent else None,
                "domain": tenant_domain_name(code),
            }
            audit_record(
                action="tenant.create", actor=actor, object_type="tenant", object_id=code, data=details
            )
            with tenant_context(tenant):
                audit_record(
                    action="tenant.create", actor=actor, object_type="tenant", object_id=code, data=details
                )
    except IntegrityError as exc:
        raise Conflict(f"tenant {code!r} could not be created: {exc}".splitlines()[0]) from exc
    finally:
        connection.set_schema_to_public()
    return tenant


def _county_parent(*, division, parent_code: str | None) -> Tenant:
    if parent_code:
        parent = Tenant.objects.filter(code=parent_code.strip().lower()).first()
        if parent is None:
            raise DomainError(
                gettext(
                    "county %(name_en)s (%(division)s) names parent %(parent_code)r, which is not a tenant"
                )
                % {"name_en": division.name_en, "division": division.code, "parent_code": parent_code},
                code="parent_missing",
                field="parent",
            )
    else:
        parent = Tenant.objects.filter(division_code=division.parent_code).first()
        if parent is None:
            raise DomainError(
                gettext(
                    "county %(name_en)s (%(division)s) needs its city (%(parent_code)s) to be a tenant first"
                )
                % {
                    "name_en": division.name_en,
                    "division": division.code,
                    "parent_code": division.parent_code,
                },
                code="parent_missing",
                field="parent",
            )
    if parent.kind != TenantKind.CITY:
        raise DomainError(
            gettext("the parent of county %(name_en)s must be a city; %(parent)r is a %(kind)s")
            % {"name_en": division.name_en, "parent": parent.code, "kind": parent.kind},
            code="parent_not_city",
            field="parent",
        )
    if parent.province != division.province:
        raise DomainError(
            gettext("county %(county)s is in %(province)s but %(parent)r is in %(parent_province)s")
            % {
                "county": division.name_en,
                "province": division.province,
                "parent": parent.code,
                "parent_province": parent.province,
            },
            code="parent_other_province",
            field="parent",
        )
    if parent.division_code != division.parent_code:
        raise DomainError(
            gettext(
                "county %(name_en)s (%(division)s) belongs to division %(parent_code)s, not to "
                "%(parent)r (%(division_code)s)"
            )
            % {
                "name_en": division.name_en,
                "division": division.code,
                "parent_code": division.parent_code,
                "parent": parent.code,
                "division_code": parent.division_code,
            },
            code="parent_wrong_city",
            field="parent",
        )
    return parent


@transaction.atomic
def tenant_suspend(*, code: str, reason: str, actor: str = "system") -> Tenant:
    """Suspend a tenant: its domain answers 403, its users cannot sign in, interop refuses it."""
    if not reason or not reason.strip():
        raise DomainError(
            gettext("a reason is required to suspend a tenant"), code="reason_required", field="reason"
        )
    tenant = Tenant.objects.select_for_update().get(pk=tenant_get(code).pk)
    if tenant.is_platform:
        raise DomainError(
            gettext("the platform itself cannot be suspended"), code="not_allowed", field="tenant"
        )
    if tenant.status == TenantStatus.SUSPENDED:
        raise DomainError(
            gettext("tenant %(code)r is already suspended") % {"code": code},
            code="already_suspended",
            field="tenant",
        )
    tenant.status, tenant.status_reason = TenantStatus.SUSPENDED, reason.strip()
    tenant.save(update_fields=["status", "status_reason"])
    audit_record(
        action="tenant.suspend", actor=actor, object_type="tenant", object_id=code, data={"reason": reason}
    )
    return tenant


@transaction.atomic
def tenant_activate(*, code: str, actor: str = "system") -> Tenant:
    tenant = Tenant.objects.select_for_update().get(pk=tenant_get(code).pk)
    if tenant.status == TenantStatus.ACTIVE:
        raise DomainError(
            gettext("tenant %(code)r is already active") % {"code": code},
            code="already_active",
            field="tenant",
        )
    tenant.status, tenant.status_reason = TenantStatus.ACTIVE, ""
    tenant.save(update_fields=["status", "status_reason"])
    audit_record(action="tenant.activate", actor=actor, object_type="tenant", object_id=code)
    return tenant


# --------------------------------------------------------------------------------------------------
# Roaming networks
# --------------------------------------------------------------------------------------------------


def network_get(code: str) -> RoamingNetwork:
    """The roaming network ``code``; refused, naming the networks there are, when there is none."""
    try:
        return RoamingNetwork.objects.get(code=code)
    except RoamingNetwork.DoesNotExist:
        known = (
            ", ".join(RoamingNetwork.objects.order_by("code").values_list("code", flat=True)) or "none yet"
        )
        raise NotFound(
            gettext("network %(code)s does not exist (networks: %(known)s)") % {"code": code, "known": known},
            field="network",
        ) from None


@transaction.atomic
def network_join(
    *, network_code: str, tenant_code: str, joined_on: dt.date | None = None, actor: str = "system"
) -> tuple[NetworkMembership, bool]:
    """Make a city a member of a roaming network; returns (membership, created). Idempotent."""
    network = network_get(network_code)
    tenant = tenant_get(tenant_code)
    if tenant.kind == TenantKind.COUNTY:
        raise DomainError(
            gettext("%(tenant)r is a county: it roams through its city %(parent)r")
            % {"tenant": tenant.code, "parent": tenant.parent.code},
            code="county_roams_through_city",
            field="tenant",
        )
    if tenant.kind != TenantKind.CITY:
        raise DomainError(
            gettext("%(tenant)r is not a city") % {"tenant": tenant.code}, code="not_a_city", field="tenant"
        )
    if not network.admits(tenant.division_code):
        raise DomainError(
            gettext(
                "%(tenant)s (%(division)s, %(province)s) is not eligible for %(network)s (%(network_name)s)"
            )
            % {
                "tenant": tenant.name_en,
                "division": tenant.division_code,
                "province": tenant.province,
                "network": network.code,
                "network_name": network.name_en,
            },
            code="not_eligible",
            field="network",
        )
    joined_on = joined_on or _today()
    membership = NetworkMembership.objects.select_for_update().filter(network=network, tenant=tenant).first()
    if membership is not None and membership.left_on is None:
        return membership, False
    if membership is None:
        membership = NetworkMembership.objects.create(network=network, tenant=tenant, joined_on=joined_on)
    else:
        membership.joined_on, membership.left_on = joined_on, None
        membership.save(update_fields=["joined_on", "left_on"])
    audit_record(
        action="network.join",
        actor=actor,
        object_type="network",
        object_id=network.code,
        data={"tenant": tenant.code, "joined_on": joined_on.isoformat()},
    )
    return membership, True


@transaction.atomic
def network_leave(
    *, network_code: str, tenant_code: str, left_on: dt.date | None = None, actor: str = "system"
) -> NetworkMembership:
    network = network_get(network_code)
    tenant = tenant_get(tenant_code)
    membership = NetworkMembership.objects.select_for_update().filter(network=network, tenant=tenant).first()
    if membership is None or membership.left_on is not None:
        raise DomainError(
            gettext("%(tenant)r is not a member of %(network)s")
            % {"tenant": tenant.code, "network": network.code},
            code="not_a_member",
            field="tenant",
        )
    left_on = left_on or _today()
    if left_on < membership.joined_on:
        raise DomainError(
            gettext("%(tenant)r cannot leave %(network)s on %(left_on)s before joining on %(joined_on)s")
            % {
                "tenant": tenant.code,
                "network": network.code,
                "left_on": left_on,
                "joined_on": membership.joined_on,
            },
            code="left_before_joined",
            field="left_on",
        )
    membership.left_on = left_on
    membership.save(update_fields=["left_on"])
    audit_record(
        action="network.leave",
        actor=actor,
        object_type="network",
        object_id=network.code,
        data={"tenant": tenant.code, "left_on": left_on.isoformat()},
    )
    return membership


# --------------------------------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------------------------------


@transaction.atomic
def user_create(
    *,
    username: str,
    role: str,
    password: str,
    tenant_code: str | None = None,
    email: str = "",
    check_password: bool = True,
    actor: str = "system",
    department: str = "",
) -> User:
    """Create a user with a role: platform roles have no tenant; a city admin a city; a county officer a county;
    a department officer a city or a county and one of its departments (``department``, its code)."""
    if role not in Role.values:
        raise DomainError(
            gettext("unknown role %(role)r (one of: %(values)s)")
            % {"role": role, "values": ", ".join(Role.values)},
            code="role_unknown",
            field="role",
        )
    tenant = None
    if role in PLATFORM_ROLES:
        if tenant_code:
            raise DomainError(
                gettext("a %(role)s belongs to the platform, not to a tenant") % {"role": role},
                code="tenant_not_allowed",
                field="tenant",
            )
    else:
        if not tenant_code:
            raise DomainError(
                gettext("a %(role)s needs a tenant") % {"role": role}, code="tenant_required", field="tenant"
            )
        tenant = tenant_get(tenant_code)
        needed = TenantKind.CITY if role == Role.CITY_ADMIN else TenantKind.COUNTY
        if role == Role.DEPARTMENT_OFFICER:
            needed = tenant.kind if tenant.kind in (TenantKind.CITY, TenantKind.COUNTY) else TenantKind.CITY
        if tenant.kind != needed:
            raise DomainError(
                gettext("a %(role)s belongs to a %(needed)s tenant; %(tenant)r is a %(kind)s")
                % {"role": role, "needed": needed, "tenant": tenant.code, "kind": tenant.kind},
                code="tenant_kind_mismatch",
                field="tenant",
            )
    department = (department or "").strip()
    if (role == Role.DEPARTMENT_OFFICER) != bool(department):
        raise DomainError(
            "a department officer names its department; no other role does",
            code="department_mismatch",
            field="department",
        )
    if User.objects.filter(username=username).exists():
        raise Conflict(
            gettext("a user named %(username)r already exists") % {"username": username}, field="username"
        )
    user = User(
        username=username, role=role, tenant=tenant, email=email, is_staff=True, department=department
    )
    if check_password:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise DomainError(
                gettext("password refused: %(messages)s") % {"messages": " ".join(exc.messages)},
                code="password_weak",
                field="password",
            ) from None
    user.set_password(password)
    user.save()
    audit_record(
        action="user.create",
        actor=actor,
        object_type="user",
        object_id=username,
        data={"role": role, "tenant": tenant.code if tenant else None, "department": department or None},
    )
    return user


# --------------------------------------------------------------------------------------------------
# API keys of partner apps (GraphQL on a tenant's domain)
# --------------------------------------------------------------------------------------------------

API_KEY_PREFIX = "cck"
API_KEY_DEFAULT_DAYS = 365
API_KEY_MAX_DAYS = 3 * 365


def api_key_hash(token: str) -> str:
    """SHA-256 of the whole token. The secret part is 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def api_key_parse(token: str) -> str | None:
    """The key id inside a well-formed token ``cck_<key_id>_<secret>``, or None."""
    parts = (token or "").split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not parts[1] or len(parts[2]) < 32:
        return None
    return parts[1]


def _scopes_clean(scopes: list[str] | tuple[str, ...], known: list[str]) -> list[str]:
    cleaned = sorted({(s or "").strip() for s in scopes} - {""})
    if not cleaned:
        raise DomainError(
            gettext("an API key needs at least one scope (one of: %(known)s)") % {"known": ", ".join(known)},
            code="scopes_required",
            field="scopes",
        )
    unknown = [s for s in cleaned if s not in known]
    if unknown:
        raise DomainError(
            gettext("unknown scope(s) %(unknown)s (known: %(known)s)")
            % {"unknown": ", ".join(unknown), "known": ", ".join(known)},
            code="scope_unknown",
            field="scopes",
        )
    return cleaned


def api_key_issue(
    *,
    tenant_code: str,
    name: str,
    scopes: list[str] | tuple[str, ...],
    expires_at: dt.datetime | None = None,
    actor: str = "system",
    now: dt.datetime | None = None,
) -> tuple[ApiKey, str]:
    """Issue a key to a partner app for one tenant; returns (key, token). The token is never stored.

    A key of the platform itself (``tenant_code="public"``) is for clearing staff's and operators' tools on
    the platform's ``/graphql/``, with platform scopes (``PlatformScope``: e.g. ``clearing:read``)."""
    now = now or timezone.now()
    name = (name or "").strip()
    if not name:
        raise DomainError(
            gettext("an API key needs the partner app's name"), code="name_required", field="name"
        )
    if len(name) > 100:
        raise DomainError(
            gettext("the partner app's name is longer than 100 characters"),
            code="name_too_long",
            field="name",
        )
    tenant = tenant_get(tenant_code)
    cleaned = _scopes_clean(scopes, list(PlatformScope.values if tenant.is_platform else Scope.values))
    if expires_at is None:
        expires_at = now + dt.timedelta(days=API_KEY_DEFAULT_DAYS)
    if timezone.is_naive(expires_at):
        raise DomainError(
            gettext("the expiry must carry a time zone"), code="expiry_naive", field="expires_at"
        )
    if expires_at <= now:
        raise DomainError(
            gettext("the expiry %(isoformat)s is not in the future") % {"isoformat": expires_at.isoformat()},
            code="expiry_past",
            field="expires_at",
        )
    if expires_at > now + dt.timedelta(days=API_KEY_MAX_DAYS):
        raise DomainError(
            gettext("an API key is valid for at most %(API_KEY_MAX_DAYS)s days")
            % {"API_KEY_MAX_DAYS": API_KEY_MAX_DAYS},
            code="expiry_too_far",
            field="expires_at",
        )
    with transaction.atomic():
        key_id = secrets.token_hex(4)
        while ApiKey.objects.filter(key_id=key_id).exists():
            key_id = secrets.token_hex(4)
        token = f"{API_KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey.objects.create(
            tenant=tenant,
            key_id=key_id,
            name=name,
            token_sha256=api_key_hash(token),
            last4=token[-4:],
            scopes=cleaned,
            created_by=actor,
            expires_at=expires_at,
        )
        details = {
            "tenant": tenant.code,
            "name": name,
            "scopes": cleaned,
            "expires_at": expires_at.isoformat(),
        }
        _api_key_audit(tenant=tenant, action="apikey.issue", actor=actor, key_id=key_id, data=details)
    return key, token


def api_key_revoke(*, tenant_code: str, key_id: str, reason: str, actor: str = "system") -> ApiKey:
    """Revoke a key at once: every later request with it is refused."""
    if not reason or not reason.strip():
        raise DomainError(
            gettext("a reason is required to revoke an API key"), code="reason_required", field="reason"
        )
    with transaction.atomic():
        key = (
            ApiKey.objects.select_for_update()
            .select_related("tenant")
            .filter(key_id=(key_id or "").strip(), tenant__code=(tenant_code or "").strip().lower())
            .first()
        )
        if key is None:
            raise NotFound(
                gettext("tenant %(tenant_code)r has no API key %(key_id)r")
                % {"tenant_code": tenant_code, "key_id": key_id},
                field="key_id",
            )
        if key.revoked_at is not None:
            raise DomainError(
                gettext("API key %(key_id)r was already revoked on %(revoked_at)s")
                % {"key_id": key_id, "revoked_at": format(key.revoked_at, "%Y-%m-%d")},
                code="already_revoked",
                field="key_id",
            )
        key.revoked_at, key.revoked_by, key.revoke_reason = timezone.now(), actor, reason.strip()
        key.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
        details = {"tenant": key.tenant.code, "reason": key.revoke_reason}
        _api_key_audit(
            tenant=key.tenant, action="apikey.revoke", actor=actor, key_id=key.key_id, data=details
        )
    return key


def _api_key_audit(*, tenant: Tenant, action: str, actor: str, key_id: str, data: dict) -> None:
    """The entry in the platform's chain and in the tenant's; the connection ends on the schema it was on
    (the public schema for the CLI, the tenant's for its admin site)."""
    with schema_context("public"):
        audit_record(action=action, actor=actor, object_type="apikey", object_id=key_id, data=data)
    if tenant.is_platform:  # a platform key: the platform's chain is the tenant's
        return
    with tenant_context(tenant):
        audit_record(action=action, actor=actor, object_type="apikey", object_id=key_id, data=data)


def api_key_touch(*, key: ApiKey, now: dt.datetime, every: dt.timedelta = dt.timedelta(minutes=5)) -> None:
    """Record that a key was used, at most once per ``every`` (no write on most requests)."""
    if key.last_used_at is not None and now - key.last_used_at < every:
        return
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    key.last_used_at = now


# --------------------------------------------------------------------------------------------------
# Rate limiting: fixed windows counted in the database (shared by every web process)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    count: int
    reset_at: dt.datetime

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)


def rate_limit_hit(
    *, bucket: str, limit: int, window_s: int, weight: int = 1, now: dt.datetime | None = None
) -> RateDecision:
    """Count ``weight`` requests of ``bucket`` in the current fixed window (one statement) and decide."""
    if limit <= 0 or window_s <= 0 or weight <= 0:
        raise DomainError(
            gettext("the rate limit and its window must be positive"), code="invalid", field="limit"
        )
    now = now or timezone.now()
    start = rate_window_start(window_s=window_s, now=now)
    table = RateWindow._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO public.{table} (bucket, window_start, count) VALUES (%s, %s, %s)"
            f" ON CONFLICT (bucket, window_start) DO UPDATE SET count = {table}.count + EXCLUDED.count"
            " RETURNING count",
            [bucket[:80], start, weight],
        )
        count = cur.fetchone()[0]
    return RateDecision(
        allowed=count <= limit, limit=limit, count=count, reset_at=start + dt.timedelta(seconds=window_s)
    )


def rate_windows_purge(*, before: dt.datetime) -> int:
    """Delete the counters of windows that started before ``before``."""
    deleted, _ = RateWindow.objects.filter(window_start__lt=before).delete()
    return deleted

"""The platform's own data, in the public schema: tenants and their domains, roaming networks, users."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin
from django_tenants.postgresql_backend.base import _check_schema_name


class TenantKind(models.TextChoices):
    PLATFORM = "platform", _("Platform")
    CITY = "city", _("City")
    COUNTY = "county", _("County")


class TenantStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended")


class Tenant(TenantMixin):
    """A city or a county running its citizen-card system on the platform (租户), or the platform itself.

    Each has its own PostgreSQL schema (``schema_name`` = ``code``), cloned from the template schema.
    """

    # django-tenants' own column, given a name people read (as the mixin defines it otherwise).
    schema_name = models.CharField(
        max_length=63,
        unique=True,
        db_index=True,
        validators=[_check_schema_name],
        verbose_name=_("schema name"),
    )
    code = models.SlugField(max_length=30, unique=True, verbose_name=_("code"))
    name_zh = models.CharField(_("Chinese name"), max_length=60)
    name_en = models.CharField(_("English name"), max_length=80)
    division_code = models.CharField(
        _("GB/T 2260 division code"), max_length=6, unique=True, null=True, blank=True
    )
    province = models.CharField(max_length=20, blank=True, verbose_name=_("province"))
    kind = models.CharField(max_length=10, choices=TenantKind.choices, verbose_name=_("kind"))
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="counties",
        help_text=_("The city a county belongs to."),
        verbose_name=_("parent"),
    )
    status = models.CharField(
        max_length=10, choices=TenantStatus.choices, default=TenantStatus.ACTIVE, verbose_name=_("status")
    )
    status_reason = models.CharField(max_length=200, blank=True, verbose_name=_("status reason"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    # Schemas are created by services.tenant_create inside its transaction, never as a save() side effect.
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")
        ordering = ["division_code"]
        constraints = [
            models.CheckConstraint(
                name="tenant_division_iff_not_platform",
                condition=Q(kind=TenantKind.PLATFORM, division_code__isnull=True)
                | (~Q(kind=TenantKind.PLATFORM) & Q(division_code__regex=r"^[1-8][0-9]{5}$")),
            ),
            models.CheckConstraint(
                name="tenant_parent_iff_county",
                condition=Q(kind=TenantKind.COUNTY, parent__isnull=False)
                | (~Q(kind=TenantKind.COUNTY) & Q(parent__isnull=True)),
            ),
            models.CheckConstraint(name="tenant_code_is_schema", condition=Q(schema_name=models.F("code"))),
        ]

    def __str__(self) -> str:
        return f"{self.name_zh} {self.name_en} ({self.code})"

    @property
    def is_platform(self) -> bool:
        return self.kind == TenantKind.PLATFORM

    @property
    def is_active(self) -> bool:
        return self.status == TenantStatus.ACTIVE

    @property
    def clearing_tenant(self) -> Tenant:
        """The tenant that clears for this one: a county clears as its city."""
        return self.parent if self.kind == TenantKind.COUNTY and self.parent_id else self

    def create_schema(self, check_if_exists=False, sync_schema=True, verbosity=1):
        from citycard.platform.schemas import schema_clone_from_template

        schema_clone_from_template(self.schema_name)
        return True


class Domain(DomainMixin):
    """A host name routed to a tenant: ``<code>.<base domain>``; the platform answers on the base domain."""

    # django-tenants' columns, given names people read (as the mixin defines them otherwise).
    domain = models.CharField(max_length=253, unique=True, db_index=True, verbose_name=_("domain"))
    tenant = models.ForeignKey(
        "platform.Tenant",
        db_index=True,
        related_name="domains",
        on_delete=models.CASCADE,
        verbose_name=_("tenant"),
    )
    is_primary = models.BooleanField(default=True, db_index=True, verbose_name=_("primary domain"))

    def __str__(self) -> str:
        return self.domain

    class Meta:
        verbose_name = _("domain")
        verbose_name_plural = _("domains")


class ClearingService(models.TextChoices):
    """What a roaming network clears (清算业务): the interop layer's agreements and cycles, and the tenants'
    books of a settled cycle, name the service by these values."""

    TRANSIT = "transit", _("Transit")
    MEDICAL = "medical", _("Medical")
    MERCHANT = "merchant", _("Merchant payments")


class RoamingNetwork(models.Model):
    """A roaming network of cities whose cards work in each other's terminals (长三角 yrd, 大湾区 gba)."""

    code = models.SlugField(max_length=20, unique=True, verbose_name=_("code"))
    name_zh = models.CharField(max_length=40, verbose_name=_("name zh"))
    name_en = models.CharField(max_length=80, verbose_name=_("name en"))
    eligible_prefixes = ArrayField(
        models.CharField(max_length=6),
        help_text=_("Division-code prefixes of the places that may join (provinces or single cities)."),
        verbose_name=_("eligible prefixes"),
    )
    members = models.ManyToManyField(
        Tenant, through="NetworkMembership", related_name="networks", verbose_name=_("members")
    )

    class Meta:
        verbose_name = _("roaming network")
        verbose_name_plural = _("roaming networks")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name_zh} {self.name_en} ({self.code})"

    def admits(self, division_code: str) -> bool:
        return any(division_code.startswith(prefix) for prefix in self.eligible_prefixes)


class NetworkMembership(models.Model):
    """A city's membership of a roaming network since a date; its counties roam through it."""

    network = models.ForeignKey(
        RoamingNetwork, on_delete=models.PROTECT, related_name="memberships", verbose_name=_("network")
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, related_name="memberships", verbose_name=_("tenant")
    )
    joined_on = models.DateField(verbose_name=_("joined on"))
    left_on = models.DateField(null=True, blank=True, verbose_name=_("left on"))

    class Meta:
        verbose_name = _("network membership")
        verbose_name_plural = _("network memberships")
        ordering = ["network__code", "joined_on", "tenant__code"]
        constraints = [
            models.UniqueConstraint(fields=["network", "tenant"], name="membership_unique"),
            models.CheckConstraint(
                name="membership_left_after_joined",
                condition=Q(left_on__isnull=True) | Q(left_on__gte=models.F("joined_on")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.code} in {self.network.code} since {self.joined_on}"


class Role(models.TextChoices):
    PLATFORM_OPERATOR = "platform_operator", _("Platform operator")
    CLEARING_STAFF = "clearing_staff", _("Clearing staff")
    CITY_ADMIN = "city_admin", _("City administrator")
    COUNTY_OFFICER = "county_officer", _("County officer")
    DEPARTMENT_OFFICER = "department_officer", _("Department officer")


PLATFORM_ROLES = frozenset({Role.PLATFORM_OPERATOR, Role.CLEARING_STAFF})
TENANT_ROLES = frozenset({Role.CITY_ADMIN, Role.COUNTY_OFFICER, Role.DEPARTMENT_OFFICER})


class User(AbstractUser):
    """A person who signs in: platform-side (no tenant) or tenant-side (exactly one tenant)."""

    role = models.CharField(max_length=20, choices=Role.choices, verbose_name=_("role"))
    tenant = models.ForeignKey(
        Tenant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="users",
        verbose_name=_("tenant"),
    )
    # A department officer's department (its code in the tenant's schema): it defines that department's
    # entitlement types, never approves them (谁主管谁负责, the city administrator approves).
    department = models.CharField(
        max_length=40,
        blank=True,
        help_text=_("A department officer's department code."),
        verbose_name=_("department"),
    )

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.CheckConstraint(
                name="user_tenant_matches_role",
                condition=Q(role__in=sorted(r.value for r in PLATFORM_ROLES), tenant__isnull=True)
                | Q(role__in=sorted(r.value for r in TENANT_ROLES), tenant__isnull=False),
            ),
            models.CheckConstraint(
                name="user_department_iff_department_officer",
                condition=Q(role=Role.DEPARTMENT_OFFICER) & ~Q(department="")
                | ~Q(role=Role.DEPARTMENT_OFFICER) & Q(department=""),
            ),
        ]

    @property
    def is_platform_user(self) -> bool:
        return self.role in PLATFORM_ROLES


class KeyPurpose(models.TextChoices):
    SIGNING = "signing", _("Signing (Ed25519): rule documents, hotlists, interop envelopes, acknowledgements")
    DATA = "data", _("Data (AES-256-GCM): personal data at rest")
    CARD_TAC = "card_tac", _("Card TAC master (SM4): the issuer's key behind every card's TAC (cities only)")


class TenantKey(models.Model):
    """A tenant's key in the platform key vault (密钥库): the secret only ever stored wrapped.

    The secret is wrapped with AES-256-GCM under a master key from the environment (its id recorded in
    ``master_key_id``), with the tenant, purpose and key id as associated data so a wrapped key cannot be
    moved to another tenant. Signing keys publish their Ed25519 public key; a retired key stays valid for
    verification until ``verify_until`` (the rotation overlap window). The platform's own key belongs to
    the platform tenant.
    """

    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, related_name="keys", verbose_name=_("tenant")
    )
    purpose = models.CharField(max_length=10, choices=KeyPurpose.choices, verbose_name=_("purpose"))
    key_id = models.CharField(max_length=60, unique=True, verbose_name=_("key id"))
    version = models.PositiveIntegerField(verbose_name=_("version"))
    public_key = models.BinaryField(null=True, blank=True, verbose_name=_("public key"))
    wrapped_secret = models.BinaryField(verbose_name=_("wrapped secret"))
    master_key_id = models.CharField(max_length=40, verbose_name=_("master key id"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    retired_at = models.DateTimeField(null=True, blank=True, verbose_name=_("retired at"))
    verify_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("A retired signing key still verifies until this time."),
        verbose_name=_("verify until"),
    )

    class Meta:
        verbose_name = _("tenant key")
        verbose_name_plural = _("tenant keys")
        ordering = ["tenant_id", "purpose", "version"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "purpose", "version"], name="tenantkey_version_unique"),
            models.UniqueConstraint(
                fields=["tenant", "purpose"],
                condition=Q(retired_at__isnull=True),
                name="tenantkey_one_current",
            ),
        ]

    def __str__(self) -> str:
        return self.key_id


class Publication(models.Model):
    """A signed document a tenant publishes for others to read (发布): fare rules, card schemes, hotlists.

    This is how anything of one tenant reaches its counties, its terminals and the network without anyone
    reading its schema: the tenant signs the document with its own key, the platform keeps every version.
    """

    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, related_name="publications", verbose_name=_("tenant")
    )
    kind = models.SlugField(max_length=40, verbose_name=_("kind"))
    version = models.PositiveIntegerField(verbose_name=_("version"))
    sha256 = models.CharField(
        max_length=64, help_text=_("SHA-256 of the canonical payload."), verbose_name=_("sha256")
    )
    document = models.JSONField(
        help_text=_("The signed document: payload and signature."), verbose_name=_("document")
    )
    published_at = models.DateTimeField(auto_now_add=True, verbose_name=_("published at"))
    published_by = models.CharField(max_length=150, verbose_name=_("published by"))

    class Meta:
        verbose_name = _("publication")
        verbose_name_plural = _("publications")
        ordering = ["tenant_id", "kind", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind", "version"], name="publication_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.kind} v{self.version}"

    @property
    def payload(self) -> dict:
        return self.document["payload"]


class ApiKey(models.Model):
    """A partner app's key for one tenant's GraphQL endpoint (like Saleor's app tokens).

    The token (``cck_<key_id>_<secret>``) is shown once when issued; only its SHA-256 is stored, with the
    last 4 characters for display. ``scopes`` are values of :class:`citycard.platform.scopes.Scope`. The key
    is accepted only on its own tenant's domain, before ``expires_at`` and while not revoked.
    """

    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, related_name="api_keys", verbose_name=_("tenant")
    )
    key_id = models.CharField(
        max_length=16, unique=True, help_text=_("Public id, part of the token."), verbose_name=_("key id")
    )
    name = models.CharField(
        max_length=100, help_text=_("The partner app (e.g. 浙大一院 app)."), verbose_name=_("name")
    )
    token_sha256 = models.CharField(max_length=64, unique=True, verbose_name=_("token sha256"))
    last4 = models.CharField(max_length=4, verbose_name=_("last4"))
    scopes = ArrayField(models.CharField(max_length=40), verbose_name=_("scopes"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    created_by = models.CharField(max_length=150, verbose_name=_("created by"))
    expires_at = models.DateTimeField(verbose_name=_("expires at"))
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("revoked at"))
    revoked_by = models.CharField(max_length=150, blank=True, verbose_name=_("revoked by"))
    revoke_reason = models.CharField(max_length=200, blank=True, verbose_name=_("revoke reason"))
    last_used_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last used at"))

    class Meta:
        ordering = ["tenant_id", "-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id} …{self.last4})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, at) -> bool:
        return self.expires_at <= at


class RateWindow(models.Model):
    """Requests counted per caller in fixed windows (GraphQL rate limiting); old windows are purged."""

    bucket = models.CharField(max_length=80, verbose_name=_("bucket"))
    window_start = models.DateTimeField(verbose_name=_("window start"))
    count = models.IntegerField(default=0, verbose_name=_("count"))

    class Meta:
        verbose_name = _("rate window")
        verbose_name_plural = _("rate windows")
        constraints = [models.UniqueConstraint(fields=["bucket", "window_start"], name="ratewindow_unique")]
        indexes = [models.Index(fields=["window_start"], name="ratewindow_start")]


class SchemaMigrationStatus(models.TextChoices):
    APPLIED = "applied", _("Migrated")
    FAILED = "failed", _("Failed")


class SchemaMigration(models.Model):
    """Where each tenant schema's migrations stood after the last ``citycard migrate`` that visited it (in the
    public schema): a schema recorded as applied at the current target is not visited again; a failed or
    missing one is retried."""

    schema_name = models.CharField(max_length=63, unique=True, verbose_name=_("schema name"))
    target = models.TextField(verbose_name=_("target"))  # the leaf migrations of the run, "app.name,..."
    status = models.CharField(max_length=10, choices=SchemaMigrationStatus.choices, verbose_name=_("status"))
    applied = models.TextField(blank=True, verbose_name=_("applied by the last run"))
    error = models.TextField(blank=True, verbose_name=_("error"))
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    seconds = models.FloatField(default=0, verbose_name=_("seconds"))
    updated_at = models.DateTimeField(verbose_name=_("updated at"))

    class Meta:
        ordering = ["schema_name"]
        verbose_name = _("schema migration state")
        verbose_name_plural = _("schema migration states")

    def __str__(self) -> str:
        return f"{self.schema_name}: {self.status}"

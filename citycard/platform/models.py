"""The platform's own data, in the public schema: tenants and their domains, roaming networks, users."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django_tenants.models import DomainMixin, TenantMixin


class TenantKind(models.TextChoices):
    PLATFORM = "platform", "Platform (平台)"
    CITY = "city", "City (市)"
    COUNTY = "county", "County (县/区)"


class TenantStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"


class Tenant(TenantMixin):
    """A city or a county running its citizen-card system on the platform (租户), or the platform itself.

    Each has its own PostgreSQL schema (``schema_name`` = ``code``), cloned from the template schema.
    """

    code = models.SlugField(max_length=30, unique=True)
    name_zh = models.CharField("Chinese name", max_length=60)
    name_en = models.CharField("English name", max_length=80)
    division_code = models.CharField(
        "GB/T 2260 division code", max_length=6, unique=True, null=True, blank=True
    )
    province = models.CharField(max_length=20, blank=True)
    kind = models.CharField(max_length=10, choices=TenantKind.choices)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="counties",
        help_text="The city a county belongs to.",
    )
    status = models.CharField(max_length=10, choices=TenantStatus.choices, default=TenantStatus.ACTIVE)
    status_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Schemas are created by services.tenant_create inside its transaction, never as a save() side effect.
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
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

    def __str__(self) -> str:
        return self.domain


class RoamingNetwork(models.Model):
    """A roaming network of cities whose cards work in each other's terminals (长三角 yrd, 大湾区 gba)."""

    code = models.SlugField(max_length=20, unique=True)
    name_zh = models.CharField(max_length=40)
    name_en = models.CharField(max_length=80)
    eligible_prefixes = ArrayField(
        models.CharField(max_length=6),
        help_text="Division-code prefixes of the places that may join (provinces or single cities).",
    )
    members = models.ManyToManyField(Tenant, through="NetworkMembership", related_name="networks")

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name_zh} {self.name_en} ({self.code})"

    def admits(self, division_code: str) -> bool:
        return any(division_code.startswith(prefix) for prefix in self.eligible_prefixes)


class NetworkMembership(models.Model):
    """A city's membership of a roaming network since a date; its counties roam through it."""

    network = models.ForeignKey(RoamingNetwork, on_delete=models.PROTECT, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="memberships")
    joined_on = models.DateField()
    left_on = models.DateField(null=True, blank=True)

    class Meta:
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
    PLATFORM_OPERATOR = "platform_operator", "Platform operator (平台运营)"
    CLEARING_STAFF = "clearing_staff", "Clearing staff (清算人员)"
    CITY_ADMIN = "city_admin", "City administrator (市民卡中心管理员)"
    COUNTY_OFFICER = "county_officer", "County officer (县区经办人员)"


PLATFORM_ROLES = frozenset({Role.PLATFORM_OPERATOR, Role.CLEARING_STAFF})
TENANT_ROLES = frozenset({Role.CITY_ADMIN, Role.COUNTY_OFFICER})


class User(AbstractUser):
    """A person who signs in: platform-side (no tenant) or tenant-side (exactly one tenant)."""

    role = models.CharField(max_length=20, choices=Role.choices)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="users")

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="user_tenant_matches_role",
                condition=Q(role__in=sorted(r.value for r in PLATFORM_ROLES), tenant__isnull=True)
                | Q(role__in=sorted(r.value for r in TENANT_ROLES), tenant__isnull=False),
            ),
        ]

    @property
    def is_platform_user(self) -> bool:
        return self.role in PLATFORM_ROLES


class KeyPurpose(models.TextChoices):
    SIGNING = "signing", "Signing (Ed25519): rule documents, hotlists, interop envelopes, acknowledgements"
    DATA = "data", "Data (AES-256-GCM): personal data at rest"
    CARD_TAC = "card_tac", "Card TAC master (SM4): the issuer's key behind every card's TAC (cities only)"


class TenantKey(models.Model):
    """A tenant's key in the platform key vault (密钥库): the secret only ever stored wrapped.

    The secret is wrapped with AES-256-GCM under a master key from the environment (its id recorded in
    ``master_key_id``), with the tenant, purpose and key id as associated data so a wrapped key cannot be
    moved to another tenant. Signing keys publish their Ed25519 public key; a retired key stays valid for
    verification until ``verify_until`` (the rotation overlap window). The platform's own key belongs to
    the platform tenant.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="keys")
    purpose = models.CharField(max_length=10, choices=KeyPurpose.choices)
    key_id = models.CharField(max_length=60, unique=True)
    version = models.PositiveIntegerField()
    public_key = models.BinaryField(null=True, blank=True)
    wrapped_secret = models.BinaryField()
    master_key_id = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    verify_until = models.DateTimeField(
        null=True, blank=True, help_text="A retired signing key still verifies until this time."
    )

    class Meta:
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

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="publications")
    kind = models.SlugField(max_length=40)
    version = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the canonical payload.")
    document = models.JSONField(help_text="The signed document: payload and signature.")
    published_at = models.DateTimeField(auto_now_add=True)
    published_by = models.CharField(max_length=150)

    class Meta:
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

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="api_keys")
    key_id = models.CharField(max_length=16, unique=True, help_text="Public id, part of the token.")
    name = models.CharField(max_length=100, help_text="The partner app (e.g. 浙大一院 app).")
    token_sha256 = models.CharField(max_length=64, unique=True)
    last4 = models.CharField(max_length=4)
    scopes = ArrayField(models.CharField(max_length=40))
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)
    revoke_reason = models.CharField(max_length=200, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant_id", "-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id} …{self.last4})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, at) -> bool:
        return self.expires_at <= at


class RateWindow(models.Model):
    """Requests counted per caller in fixed windows (GraphQL rate limiting); old windows are purged."""

    bucket = models.CharField(max_length=80)
    window_start = models.DateTimeField()
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bucket", "window_start"], name="ratewindow_unique")]
        indexes = [models.Index(fields=["window_start"], name="ratewindow_start")]

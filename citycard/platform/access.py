"""Who belongs on which site: the one rule behind the admin sites, the pages and the sign-in form.

Every host is a site: the platform's (the base domain, public schema) or one tenant's (``<code>.<base>``).
A platform user (operator, clearing staff: no tenant) belongs on the platform's site only; a tenant user
(city administrator, county officer) on its own tenant's site only, and only while that tenant is active.
A county officer is not a member of the city's site, nor a city administrator of a county's.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from citycard.platform.models import PLATFORM_ROLES, TENANT_ROLES, Tenant


def _site_of(tenant: Tenant) -> str:
    """The host name a user of ``tenant`` signs in on (its primary domain)."""
    domain = tenant.get_primary_domain()
    return domain.domain if domain is not None else tenant.code


def site_refusal(*, user, tenant: Tenant | None) -> str | None:
    """Why ``user`` may not use the site of ``tenant`` (a message naming where to go instead), or None.

    ``tenant`` is the tenant the request's host routes to (the platform tenant on the base domain)."""
    if tenant is None:
        return str(_("This host is not a site of the platform."))
    if not user.is_authenticated:
        return str(_("Sign in first: this page is only for the staff of this site."))
    if not user.is_active or not user.is_staff:
        return str(
            _("%(username)s is not an active staff account; ask your administrator to enable it.")
            % {"username": user.get_username()}
        )
    role = getattr(user, "role", None)
    own_id = getattr(user, "tenant_id", None)
    # Decided on ids alone: this runs on every request; the user's tenant is loaded only to say where to go.
    if tenant.is_platform:
        if role in PLATFORM_ROLES and own_id is None:
            return None
    elif role in TENANT_ROLES and own_id is not None and own_id == tenant.pk:
        if tenant.is_active:
            return None
        return str(
            _("%(tenant)s is suspended on this platform; its users cannot sign in until it is re-activated.")
            % {"tenant": tenant}
        )
    if own_id is None:
        return str(
            _("%(username)s is a platform account: sign in on the platform's site, %(site)s.")
            % {"username": user.get_username(), "site": settings.BASE_DOMAIN}
        )
    own = user.tenant
    return str(
        _("%(username)s is an account of %(tenant)s: sign in on its own site, %(site)s.")
        % {"username": user.get_username(), "tenant": own, "site": _site_of(own)}
    )


def is_site_member(*, user, tenant: Tenant | None) -> bool:
    return site_refusal(user=user, tenant=tenant) is None

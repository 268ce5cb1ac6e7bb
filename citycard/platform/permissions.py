"""What each role may do with the platform's own models and the audit log (see roles.py)."""

ALL = {"view", "add", "change", "delete"}

PLATFORM_ROLE_PERMISSIONS = {
    "platform_operator": {
        "platform.tenant": {"view", "add", "change"},
        "platform.domain": {"view"},
        "platform.roamingnetwork": {"view", "change"},
        "platform.networkmembership": {"view", "add", "change"},
        "platform.user": {"view", "add", "change"},
        "platform.apikey": {"view", "change"},
        "audit.auditentry": {"view"},
    },
    "clearing_staff": {
        "platform.tenant": {"view"},
        "platform.roamingnetwork": {"view"},
        "platform.networkmembership": {"view"},
        "audit.auditentry": {"view"},
    },
    "city_admin": {
        "platform.user": {"view", "add", "change"},
        "platform.apikey": {"view", "add", "change"},
        "audit.auditentry": {"view"},
    },
    "county_officer": {
        "platform.apikey": {"view"},
        "audit.auditentry": {"view"},
    },
}

from django.apps import AppConfig


class MedicalConfig(AppConfig):
    """Cross-city medical settlement on the tenant side (异地就医): the treatment place's catalogue, the
    insured place's policy and each insured person's year, and the claims hospitals submit."""

    name = "citycard.tenants.medical"
    label = "medical"
    verbose_name = "Cross-city medical claims"

    role_permissions = {
        "city_admin": {
            "medical.catalogueitem": {"view", "add", "change"},
            "medical.policy": {"view", "add", "change"},
            "medical.claim": {"view"},
            "medical.insuredyear": {"view"},
        },
    }

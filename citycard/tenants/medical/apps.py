from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MedicalConfig(AppConfig):
    """Cross-city medical settlement on the tenant side (异地就医): the treatment place's catalogue, the
    insured place's policies and each insured person's year, closed years, and the claims hospitals submit.
    A city configures it; a county's hospitals settle through their city."""

    name = "citycard.tenants.medical"
    label = "medical"
    verbose_name = _("Cross-city medical claims")

    role_permissions = {
        "city_admin": {
            "medical.catalogueitem": {"view", "add", "change"},
            "medical.policy": {"view", "add", "change"},
            "medical.claim": {"view"},
            "medical.insuredyear": {"view", "add", "change"},
            "medical.closedyear": {"view", "add"},
        },
    }

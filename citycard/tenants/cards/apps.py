from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CardsConfig(AppConfig):
    """Card schemes, cardholders, cards and their lifecycle, the hotlist (卡种、持卡人、卡片生命周期、黑名单)."""

    name = "citycard.tenants.cards"
    label = "cards"
    verbose_name = _("Cards and cardholders")

    role_permissions = {
        "city_admin": {
            "cards.cardscheme": {"view", "add", "change"},
            "cards.cardholder": {"view", "add", "change"},
            "cards.cardholdercategory": {"view", "add", "change"},
            "cards.card": {"view", "add", "change"},
            "cards.hotlistentry": {"view"},
        },
        # A county sees the cards of its own schema (none issued there) and reads its city's schemes
        # through the signed publication, never by writing them.
        "county_officer": {
            "cards.cardscheme": {"view"},
            "cards.cardholder": {"view"},
            "cards.card": {"view"},
            "cards.hotlistentry": {"view"},
        },
    }
    demo_step = "citycard.tenants.demo.demo_step"  # cards, accounts and departments: above every layer
    demo_order = 40
    scale_step = "citycard.tenants.demo.scale_step"  # cardholders in the largest cities of `tenant scale`

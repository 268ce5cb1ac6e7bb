from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FaresConfig(AppConfig):
    """Discount rules as data, the signed rule document and the fare simulator (优惠规则与票价)."""

    name = "citycard.tenants.fares"
    label = "fares"
    verbose_name = _("Fares and discount rules")

    _MODELS = (
        "routeset",
        "timeframe",
        "timeframewindow",
        "quota",
        "fareproduct",
        "legrule",
        "transferrule",
        "cap",
        "visitorpolicy",
        # the metro's rows (进出站计费)
        "stop",
        "area",
        "line",
        "faretable",
        "gaterule",
    )
    role_permissions = {
        "city_admin": {f"fares.{m}": {"view", "add", "change", "delete"} for m in _MODELS},
        # A county uses its city's rules (read-only); its own schema holds none.
        "county_officer": {f"fares.{m}": {"view"} for m in _MODELS},
    }
    demo_step = "citycard.tenants.fares.demo.demo_step"
    demo_order = 50  # before the terminals' step, whose validators price taps with the published rules

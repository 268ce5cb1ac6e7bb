from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CreditConfig(AppConfig):
    """Credit pay-later (信用付): credit lines from the city's eligibility rules, payments and fares deferred
    onto a monthly bill (账单), repayment (还款) from a bound channel or the online account, overdue handling
    through the hotlist."""

    name = "citycard.tenants.credit"
    label = "credit"
    verbose_name = _("Credit pay-later")

    demo_step = "citycard.tenants.credit.demo.demo_step"
    demo_order = 75  # after the merchants' step (the student's card, the demo merchants)

    role_permissions = {
        "city_admin": {
            "credit.creditrules": {"view", "add", "change"},
            "credit.creditline": {"view"},
            "credit.credititem": {"view"},
            "credit.creditbill": {"view"},
            "credit.creditrepayment": {"view"},
            "credit.roamingfare": {"view"},
            "credit.roamingpayment": {"view"},
            # the held citizen-code rides: charged after review or waived (admin actions)
            "credit.coderideflag": {"view", "change"},
            "credit.coderidereview": {"view"},
        },
    }

    def ready(self) -> None:
        # The issuer's side of its cardholders' citizen-code rides in other cities: exchange, below credit,
        # hands over the rides its validation accepted (imported here: models load once the registry is ready).
        from citycard.tenants.credit.services import roaming_code_fares_take, roaming_code_payments_book
        from citycard.tenants.exchange import services as exchange

        if exchange.ISSUER_CODE_FARE_SINK is None:
            exchange.ISSUER_CODE_FARE_SINK = roaming_code_fares_take
        # and their citizen-code payments at other cities' merchants, booked inside the validation's answer
        if exchange.ISSUER_CODE_PAYMENT_SINK is None:
            exchange.ISSUER_CODE_PAYMENT_SINK = roaming_code_payments_book

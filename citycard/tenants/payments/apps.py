from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PaymentsConfig(AppConfig):
    """Payment channels (支付渠道): the card's bank, UnionPay, WeChat Pay, Alipay; top-ups through them and
    the daily reconciliation of their statements (对账)."""

    name = "citycard.tenants.payments"
    label = "payments"
    verbose_name = _("Payment channels")

    role_permissions = {
        "city_admin": {
            "payments.paymentchannel": {"view"},
            "payments.topuporder": {"view"},
            "payments.channelrefund": {"view"},
            "payments.channelnotice": {"view"},
            "payments.statementrun": {"view"},
            "payments.reconexception": {"view", "change"},
            "payments.channelbinding": {"view"},
            # the 长款 in suspense and the providers' payouts: listed, and refunded by the suspense page's
            # actions (which ask for the right to resolve differences, above)
            "payments.suspenseitem": {"view"},
            "payments.channelpayout": {"view"},
        },
    }

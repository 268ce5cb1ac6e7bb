"""The adapter of each provider by its name."""

from __future__ import annotations

from citycard.tenants.payments.protocols import ChannelAdapter, ChannelConfig, alipay, bank, unionpay, wechat

ADAPTERS = {
    "wechat": wechat.WeChatPay,
    "alipay": alipay.Alipay,
    "unionpay": unionpay.UnionPay,
    "bank": bank.CardBank,
}


def adapter_for(provider: str, config: ChannelConfig) -> ChannelAdapter:
    """The adapter of ``provider`` (wechat, alipay, unionpay, bank) with ``config``."""
    return ADAPTERS[provider](config)

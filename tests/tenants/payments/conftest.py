"""Channels against their local sandboxes: each provider's sandbox served on 127.0.0.1, the channel
configured with its keys, and an inbox the sandbox's notifications are delivered to over HTTP (the tests
hand what arrived to the notify service or to the notify view, inside the test's transaction)."""

from __future__ import annotations

import pytest

from citycard.tenants.accounts import services as accounts
from citycard.tenants.cards import services as cards
from citycard.tenants.payments import services
from citycard.tenants.payments.drill import sandbox_channel_configure
from citycard.tenants.payments.sandboxes import NotifyInbox, Sandbox, SandboxKeys

MERCHANT = {
    "wechat": "1900000109",
    "alipay": "2088102177846880",
    "unionpay": "777290058110048",
    "bank": "330400BK0001",
}
APP = {"wechat": "wxd678efh567hg6787", "alipay": "2021000118600001", "unionpay": "", "bank": ""}


@pytest.fixture(scope="session")
def inbox():
    box = NotifyInbox()
    yield box
    box.stop()


@pytest.fixture(scope="session")
def sandbox_keys():
    """One key set per provider for the session (RSA key generation is the slow part)."""
    return {p: SandboxKeys.generate() for p in MERCHANT}


@pytest.fixture(scope="session")
def sandboxes(sandbox_keys):
    served = {
        p: Sandbox.start(p, merchant_id=MERCHANT[p], app_id=APP[p], keys=sandbox_keys[p]) for p in MERCHANT
    }
    yield served
    for s in served.values():
        s.stop()


def configure(sandbox: Sandbox, inbox: NotifyInbox, *, code: str, name: str) -> None:
    """The channel ``code`` configured in the current tenant against ``sandbox``, notifying ``inbox``."""
    sandbox_channel_configure(sandbox, code=code, name=name, notify_url=f"{inbox.url}/{code}", actor="test")


@pytest.fixture
def channel(city, sandboxes, inbox):
    """``channel(provider)``: the provider's channel configured in Jiaxing against its sandbox; (sandbox, code)."""

    def _channel(provider: str, code: str | None = None):
        sandbox = sandboxes[provider]
        code = code or provider
        configure(sandbox, inbox, code=code, name=f"{provider} sandbox")
        return sandbox, code

    return _channel


@pytest.fixture
def own_channel(city, sandbox_keys, inbox):
    """``own_channel(provider)``: a sandbox of the test's own (no other test's orders in its statements),
    the channel configured against it; (sandbox, code)."""
    started = []

    def _own(provider: str):
        sandbox = Sandbox.start(
            provider, merchant_id=MERCHANT[provider], app_id=APP[provider], keys=sandbox_keys[provider]
        )
        started.append(sandbox)
        code = f"own-{provider}"
        configure(sandbox, inbox, code=code, name=f"{provider} (own)")
        return sandbox, code

    yield _own
    for sandbox in started:
        sandbox.stop()
    inbox.drain()


@pytest.fixture
def card_no(holder):
    card = cards.card_issue_now(scheme_code="01", cardholder_id=holder().pk, actor="t").card_no
    accounts.account_open(card_no=card, actor="t")
    return card


def deliver(inbox: NotifyInbox, sandbox: Sandbox, code: str) -> list[bytes]:
    """Hand every notification the sandbox sent to the notify service; the acknowledgements' bodies."""
    sandbox.settle()
    return [
        services.topup_notification_receive(channel_code=code, headers=h, body=b).status
        for h, b in inbox.drain()
    ]

"""The terminal fetches the keys it verifies with from its tenant's site, signed by the platform, keeps them,
and an upload verifies its acknowledgement with them; an acknowledgement by a key it does not hold leaves
the batch queued."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.keyring import (
    SIGNS_ACKNOWLEDGEMENTS,
    SIGNS_FARE_RULES,
    keyring_held,
)
from citycard.terminal_kit.signing import TerminalCredentials, public_key_bytes, sign_document
from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.sync import WELL_KNOWN_KEYS, Downloader, DownloadError
from citycard.terminal_kit.upload import AcknowledgementUnverified, Uploader
from tests.terminal_kit.kit import HANGZHOU, KEYS_NOW, PLATFORM, TONGLU, entry, keys_document

TERMINAL = TerminalCredentials(tenant="tonglu", key_id="TL-BUS-0001:k1", key=Ed25519PrivateKey.generate())
NOW = KEYS_NOW


class Site:
    """The tenant's site: its keys document, and the upload endpoint answering with a tonglu-signed ack."""

    def __init__(self, document: dict) -> None:
        self.document = document
        self.uploads = 0

    def get(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        assert url.endswith(WELL_KNOWN_KEYS) and "X-Terminal-Signature" not in headers  # public: unsigned
        return 200, json.dumps(self.document).encode()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        self.uploads += 1
        batch = json.loads(body)["payload"]
        ack = {"batch_id": batch["batch_id"], "accepted": len(batch["transactions"]), "rejected": 0}
        return 200, json.dumps(sign_document(ack, key=TONGLU, key_id="tonglu:s1")).encode()


@pytest.fixture
def store(tmp_path):
    s = TapStore(tmp_path / "taps.sqlite")
    yield s
    s.close()


def downloader(site: Site) -> Downloader:
    return Downloader(
        base_url="https://tonglu.example",
        tenant_keys={},
        credentials=TERMINAL,
        get=site.get,
        clock=lambda: NOW,
    )


def test_first_sync_trusts_the_platform_key_once_and_keeps_the_keys_by_what_they_sign(store):
    taken = downloader(Site(keys_document())).keys(store)
    assert taken.first_use
    held = keyring_held(store)
    assert held.keys(SIGNS_ACKNOWLEDGEMENTS, at=NOW) == {"tonglu:s1": public_key_bytes(TONGLU)}
    assert held.keys(SIGNS_FARE_RULES, at=NOW) == {"hangzhou:s1": public_key_bytes(HANGZHOU)}
    # Afterwards only the platform key held is trusted: a document by another key is refused.
    impostor = keys_document(signer=Ed25519PrivateKey.generate())
    with pytest.raises(DownloadError, match="refused: signature by 'public:s1' does not match"):
        downloader(Site(impostor)).keys(store)
    stranger = keys_document(signer=Ed25519PrivateKey.generate(), signer_id="public:s9")
    with pytest.raises(DownloadError, match="unknown key 'public:s9', not by a platform key this terminal"):
        downloader(Site(stranger)).keys(store)
    assert not downloader(Site(keys_document())).keys(store).first_use


def test_a_pinned_platform_key_refuses_a_document_signed_by_any_other(store):
    pinned = {"public:s1": public_key_bytes(Ed25519PrivateKey.generate())}
    with pytest.raises(DownloadError, match="signature by 'public:s1' does not match"):
        downloader(Site(keys_document())).keys(store, pinned=pinned)
    assert keyring_held(store) is None
    taken = downloader(Site(keys_document())).keys(store, pinned={"public:s1": public_key_bytes(PLATFORM)})
    assert not taken.first_use


def test_a_document_for_another_tenant_or_older_than_the_one_held_is_refused(store):
    with pytest.raises(DownloadError, match="for 'hangzhou', not 'tonglu'"):
        downloader(Site(keys_document(tenant="hangzhou"))).keys(store)
    downloader(Site(keys_document())).keys(store)
    with pytest.raises(DownloadError, match="before the one held"):
        downloader(Site(keys_document(issued_at=NOW - dt.timedelta(days=1)))).keys(store)


def test_a_retired_key_verifies_until_its_overlap_ends_on_the_terminals_clock(store):
    old = Ed25519PrivateKey.generate()
    overlapping = entry("tonglu:s0", old, [SIGNS_ACKNOWLEDGEMENTS], verify_until=NOW + dt.timedelta(days=2))
    downloader(Site(keys_document(overlapping))).keys(store)
    held = keyring_held(store)
    assert set(held.keys(SIGNS_ACKNOWLEDGEMENTS, at=NOW)) == {"tonglu:s0", "tonglu:s1"}
    assert set(held.keys(SIGNS_ACKNOWLEDGEMENTS, at=NOW + dt.timedelta(days=3))) == {"tonglu:s1"}


def test_the_platform_key_rotates_through_the_document_signed_by_the_old_one(store):
    downloader(Site(keys_document())).keys(store)
    new = Ed25519PrivateKey.generate()
    during = keys_document(entry("public:s2", new, ["keys"]))  # still signed by public:s1
    downloader(Site(during)).keys(store, pinned={"public:s1": public_key_bytes(PLATFORM)})
    after = keys_document(issued_at=NOW + dt.timedelta(days=8), signer=new, signer_id="public:s2")
    after["payload"]["keys"][2] = entry("public:s2", new, ["keys"])
    after = sign_document(after["payload"], key=new, key_id="public:s2")
    assert downloader(Site(after)).keys(store).signed_by == "public:s2"  # learnt from the one before


def _queue_one_batch(store: TapStore) -> None:
    record = {"card_no": "3301000100000000017", "card_counter": 1, "terminal_seq": 1}
    store.tap_complete(store.tap_pending(record), record)


BATCH = {
    "terminal_id": "TL-BUS-0001",
    "tenant": "tonglu",
    "key": TERMINAL.key,
    "key_id": "TL-BUS-0001:k1",
    "rule_version": 0,
    "hotlist_version": 0,
}


def test_an_acknowledgement_by_a_key_not_held_keeps_the_batch_until_the_keys_are_fetched(store):
    """The audit's case: the county terminal held its city's key only (fares export before the fix)."""
    site = Site(keys_document())
    _queue_one_batch(store)
    city_only = Uploader(
        url="https://tonglu.example/terminal/v1/batches",
        tenant_keys={"hangzhou:s1": public_key_bytes(HANGZHOU)},
        post=site.post,
    )
    with pytest.raises(AcknowledgementUnverified) as err:
        city_only.drain(store, **BATCH)
    assert "signed by unknown key 'tonglu:s1'" in str(err.value) and "stays queued" in str(err.value)
    assert "\n" not in str(err.value)
    assert len(store.taps("complete")) == 1  # nothing lost
    downloader(site).keys(store)
    acks = keyring_held(store).keys(SIGNS_ACKNOWLEDGEMENTS, at=NOW)
    uploader = Uploader(url="https://tonglu.example/terminal/v1/batches", tenant_keys=acks, post=site.post)
    assert uploader.drain(store, **BATCH) == 1
    assert store.taps() == [] and site.uploads == 2  # the same batch sent again, now acknowledged

"""The terminal keeps its hotlist current from signed downloads and holds it across restarts."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.signing import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
    TerminalCredentials,
    b64decode,
    public_key_bytes,
    request_signing_bytes,
    sign_document,
)
from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.sync import Downloader, DownloadError, hotlist_held

TENANT_KEY = Ed25519PrivateKey.generate()
KEYS = {"hangzhou:s1": public_key_bytes(TENANT_KEY)}
TERMINAL = TerminalCredentials(tenant="hangzhou", key_id="HZ-BUS-0001:k1", key=Ed25519PrivateKey.generate())


class BackOffice:
    """The hotlist endpoint as the back office answers it: versions of the list, deltas on request."""

    def __init__(self) -> None:
        self.versions: list[set[str]] = [set()]
        self.requests: list[str] = []
        self.key = TENANT_KEY
        self.delta_base_override: int | None = None

    def list(self, *cards: str) -> None:
        self.versions.append(self.versions[-1] | set(cards))

    def unlist(self, *cards: str) -> None:
        self.versions.append(self.versions[-1] - set(cards))

    def get(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        query = url.split("/terminal/v1/hotlist", 1)[1]
        self.requests.append(query)
        # Only the tenant's terminal gets the list: the request is signed for this very path.
        signed = request_signing_bytes(
            method="GET",
            path="/terminal/v1/hotlist" + query,
            tenant="hangzhou",
            key_id=headers[KEY_HEADER],
            at=headers[TIME_HEADER],
        )
        TERMINAL.key.public_key().verify(b64decode(headers[SIGNATURE_HEADER]), signed)
        version = len(self.versions) - 1
        since = int(url.rsplit("since=", 1)[1]) if "since=" in url else None
        if since == version:
            return 304, b""
        if since is None or since > version:
            payload = {
                "kind": "hotlist",
                "version": version,
                "tenant": "hangzhou",
                "cards": sorted(self.versions[-1]),
            }
        else:
            base = self.delta_base_override if self.delta_base_override is not None else since
            payload = {
                "kind": "hotlist",
                "version": version,
                "tenant": "hangzhou",
                "delta": {
                    "since": base,
                    "added": sorted(self.versions[-1] - self.versions[since]),
                    "removed": sorted(self.versions[since] - self.versions[-1]),
                },
            }
        return 200, json.dumps(sign_document(payload, key=self.key, key_id="hangzhou:s1")).encode()


@pytest.fixture
def store(tmp_path):
    s = TapStore(tmp_path / "taps.sqlite")
    yield s
    s.close()


def test_deltas_keep_the_list_current_and_it_survives_a_restart(store, tmp_path):
    office = BackOffice()
    down = Downloader(
        base_url="https://hangzhou.example", tenant_keys=KEYS, credentials=TERMINAL, get=office.get
    )
    assert down.hotlist(store).version == 0  # nothing listed yet: 304
    office.list("A", "B")
    assert down.hotlist(store).cards == {"A", "B"}
    office.unlist("A")
    office.list("C")
    held = down.hotlist(store)
    assert (held.version, held.cards) == (3, {"B", "C"})
    assert office.requests == ["?since=0", "?since=0", "?since=1"]
    store.close()
    reopened = TapStore(tmp_path / "taps.sqlite")
    assert hotlist_held(reopened).cards == {"B", "C"} and hotlist_held(reopened).version == 3
    reopened.close()


def test_a_delta_for_another_version_falls_back_to_the_full_list(store):
    office = BackOffice()
    down = Downloader(
        base_url="https://hangzhou.example", tenant_keys=KEYS, credentials=TERMINAL, get=office.get
    )
    office.list("A")
    down.hotlist(store)
    office.list("B")
    office.delta_base_override = 0  # a delta that does not fit what the terminal holds
    assert down.hotlist(store).cards == {"A", "B"}
    assert office.requests[-1] == ""  # the full list


def test_a_document_signed_by_another_key_changes_nothing(store):
    office = BackOffice()
    down = Downloader(
        base_url="https://hangzhou.example", tenant_keys=KEYS, credentials=TERMINAL, get=office.get
    )
    office.list("A")
    down.hotlist(store)
    office.key = Ed25519PrivateKey.generate()
    office.unlist("A")
    with pytest.raises(DownloadError, match="refused"):
        down.hotlist(store)
    assert hotlist_held(store).cards == {"A"}


def test_an_older_list_is_never_taken(store):
    office = BackOffice()
    down = Downloader(
        base_url="https://hangzhou.example", tenant_keys=KEYS, credentials=TERMINAL, get=office.get
    )
    office.list("A")
    office.list("B")
    down.hotlist(store)
    office.versions = office.versions[:2]  # a back office answering with an older version (a replay)
    with pytest.raises(DownloadError):
        down.hotlist(store)
    assert hotlist_held(store).version == 2


def test_no_answer_keeps_what_is_held(store):
    def offline(url, headers):
        raise OSError("network unreachable")

    with pytest.raises(DownloadError, match="did not answer"):
        Downloader(base_url="https://x", tenant_keys=KEYS, credentials=TERMINAL, get=offline).hotlist(store)
    assert hotlist_held(store).version == 0

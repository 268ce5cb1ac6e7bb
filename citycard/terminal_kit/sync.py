"""Downloads (下载): keep the terminal's hotlist current from the back office, and keep it across restarts.

``GET /terminal/v1/hotlist?since=<held version>`` on the tenant's domain, signed by the terminal's key
(``TerminalCredentials``: the back office answers no one else), answers 304 when the terminal is
current, or a tenant-signed document: the delta since the held version, or the full list (a first
download, or a terminal whose version the back office no longer knows). The document is verified against
the tenant's public keys and applied (``Hotlist.apply``: never an older version, a delta only on the
version it was made for); a delta that does not fit is answered by fetching the full list. What the
terminal holds is written to its queue database, so a validator restarted offline still blocks what it
blocked before.

Before the hotlist, ``sync`` fetches the keys it verifies with: ``GET /.well-known/citycard-keys.json``,
signed by the platform (``Downloader.keys``, keyring.py).
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from citycard.terminal_kit.entitlements import EntitlementDeltaMismatch, EntitlementList
from citycard.terminal_kit.hotlist import Hotlist, HotlistDeltaMismatch
from citycard.terminal_kit.i18n import N_, said, text_of
from citycard.terminal_kit.keyring import KeysTaken, keyring_take
from citycard.terminal_kit.signing import SignatureError, TerminalCredentials
from citycard.terminal_kit.store import TapStore

HttpGet = Callable[[str, dict[str, str]], tuple[int, bytes]]
HOTLIST = "hotlist"
WELL_KNOWN_KEYS = "/.well-known/citycard-keys.json"


def urllib_get(url: str, headers: dict[str, str], timeout: float = 15.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class DownloadError(Exception):
    """The back office's answer could not be used; the terminal keeps what it held."""


def hotlist_held(store: TapStore) -> Hotlist:
    """The hotlist this terminal holds (empty, version 0, before the first download)."""
    held = store.document_get(HOTLIST)
    if held is None:
        return Hotlist()
    version, body = held
    return Hotlist(tenant=body.get("tenant", ""), version=version, cards=frozenset(body.get("cards", [])))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Downloader:
    base_url: str  # the tenant's site, e.g. https://hangzhou.example
    tenant_keys: dict[str, bytes]
    credentials: TerminalCredentials  # every download is signed: the hotlist is for the tenant's terminals
    get: HttpGet = urllib_get
    host: str | None = None  # Host header when base_url names an address rather than the tenant's domain
    clock: Callable[[], dt.datetime] = _utcnow

    def _fetch(self, path: str, *, signed: bool = True) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        if signed:
            headers.update(self.credentials.headers(method="GET", path=path, at=self.clock()))
        if self.host:
            headers["Host"] = self.host
        try:
            return self.get(self.base_url.rstrip("/") + path, headers)
        except OSError as exc:
            raise DownloadError(said(N_("the back office did not answer: %(exc)s"), exc=exc)) from exc

    def keys(self, store: TapStore, *, pinned: Mapping[str, bytes] | None = None) -> KeysTaken:
        """Fetch the tenant's keys document, verify it under the platform's key and keep it (keyring.py).

        Public keys only: the request is not signed. A refused or missing answer keeps the keys held."""
        status, body = self._fetch(WELL_KNOWN_KEYS, signed=False)
        if status != 200:
            raise DownloadError(
                said(
                    N_("keys download answered %(status)s: %(body)s"),
                    status=status,
                    body=body[:200].decode(errors="replace"),
                )
            )
        try:
            return keyring_take(
                json.loads(body), store=store, tenant=self.credentials.tenant, pinned=pinned, now=self.clock()
            )
        except ValueError as exc:  # KeysRefused, and a body that is not JSON
            raise DownloadError(text_of(exc)) from exc

    def hotlist(self, store: TapStore) -> Hotlist:
        """Bring the held hotlist up to date and persist it; returns what the terminal now holds."""
        held = hotlist_held(store)
        status, body = self._fetch(f"/terminal/v1/hotlist?since={held.version}")
        if status == 304:
            return held
        if status != 200:
            raise DownloadError(
                said(
                    N_("hotlist download answered %(status)s: %(body)s"),
                    status=status,
                    body=body[:200].decode(errors="replace"),
                )
            )
        try:
            updated = held.apply(json.loads(body), keys=self.tenant_keys)
        except HotlistDeltaMismatch:
            # A delta made for another version than the one held: take the full list instead.
            status, body = self._fetch("/terminal/v1/hotlist")
            if status != 200:
                raise DownloadError(
                    said(N_("full hotlist download answered %(status)s"), status=status)
                ) from None
            updated = self._apply(held, body)
        except (ValueError, SignatureError) as exc:
            raise DownloadError(said(N_("the hotlist document was refused: %(exc)s"), exc=exc)) from exc
        store.document_put(
            kind=HOTLIST,
            version=updated.version,
            body={"tenant": updated.tenant, "cards": sorted(updated.cards)},
        )
        return updated

    def _apply(self, held: Hotlist, body: bytes) -> Hotlist:
        try:
            return held.apply(json.loads(body), keys=self.tenant_keys)
        except (ValueError, SignatureError) as exc:  # HotlistError is a ValueError
            raise DownloadError(said(N_("the hotlist document was refused: %(exc)s"), exc=exc)) from exc

    def entitlements(self, held: EntitlementList) -> EntitlementList:
        """Bring the held entitlement list (离线权益名单) up to date: the delta on its version, the full list
        when the delta does not follow; never an older version. Returns what the terminal now holds."""
        status, body = self._fetch(f"/terminal/v1/entitlements?since={held.version}")
        if status == 304:
            return held
        try:
            if status != 200:
                raise DownloadError(said(N_("entitlement list download answered %(status)s"), status=status))
            return held.apply(json.loads(body), keys=self.tenant_keys)
        except EntitlementDeltaMismatch:
            status, body = self._fetch("/terminal/v1/entitlements")
            if status != 200:
                raise DownloadError(
                    said(N_("full entitlement list download answered %(status)s"), status=status)
                ) from None
            try:
                return held.apply(json.loads(body), keys=self.tenant_keys)
            except (ValueError, SignatureError) as exc:
                raise DownloadError(said(N_("the entitlement list was refused: %(exc)s"), exc=exc)) from exc
        except (ValueError, SignatureError) as exc:
            raise DownloadError(said(N_("the entitlement list was refused: %(exc)s"), exc=exc)) from exc

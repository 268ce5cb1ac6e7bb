import argparse
import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.__main__ import _fare, main
from citycard.terminal_kit.i18n import language_activate
from citycard.terminal_kit.keyring import keyring_take
from citycard.terminal_kit.signing import b64encode, public_key_bytes, sign_document
from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.sync import hotlist_held
from tests.terminal_kit import kit


@pytest.fixture(autouse=True)
def _english(monkeypatch):
    """These tests read what citycard-terminal says in English (its source text); the Chinese it speaks by
    default is read by tests/terminal_kit/test_cli_chinese.py."""
    monkeypatch.setenv("CITYCARD_LANGUAGE", "en")
    language_activate("en")  # for the helpers called without main()


def test_simulate_a_day_in_process(capsys, tmp_path):
    assert main(["--fare", "150", "simulate", "--taps", "60", "--cards", "8", "--queue", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "60 taps" in out and "approved" in out
    assert (tmp_path / "taps.sqlite").exists()


class CountySite:
    """Tonglu's site over HTTP: its keys document (platform-signed), its hotlist, the batch upload."""

    def __init__(self, code_issuers: dict | None = None) -> None:
        hotlist = {"kind": "hotlist", "version": 4, "tenant": "tonglu", "cards": ["3301000000000000017"]}
        self.hotlist = json.dumps(sign_document(hotlist, key=kit.TONGLU, key_id="tonglu:s1")).encode()
        # the offline entitlement list: no entries, the visitors' home cities' citizen-code keys
        listed = {"kind": "entitlements", "tenant": "tonglu", "version": 1, "types": {}, "entries": []}
        listed["code_issuers"] = code_issuers or {}
        self.entitlements = json.dumps(sign_document(listed, key=kit.TONGLU, key_id="tonglu:s1")).encode()
        self.keys = json.dumps(kit.keys_document()).encode()
        self.seen: list[tuple[str, str, str | None]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                site.seen.append((self.path, self.headers["Host"], self.headers["X-Terminal-Key"]))
                if self.path == "/.well-known/citycard-keys.json":
                    self.answer(200, site.keys)
                elif self.path.startswith("/terminal/v1/entitlements"):
                    self.answer(200, site.entitlements)
                else:
                    self.answer(*((304, b"") if self.path.endswith("since=4") else (200, site.hotlist)))

            def do_POST(self):
                batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["payload"]
                ack = {"batch_id": batch["batch_id"], "accepted": len(batch["transactions"]), "rejected": 0}
                self.answer(200, json.dumps(sign_document(ack, key=kit.TONGLU, key_id="tonglu:s1")).encode())

            def answer(self, status, body):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def county_site():
    site = CountySite()
    yield site
    site.server.shutdown()


@pytest.fixture
def terminal_key(tmp_path):
    path = tmp_path / "terminal.key"
    path.write_text(base64.b64encode(os.urandom(32)).decode())
    return path


def test_sync_fetches_the_keys_then_the_hotlist_and_the_validator_holds_it(
    capsys, tmp_path, county_site, terminal_key
):
    queue = tmp_path / "taps.sqlite"
    args = ["--tenant", "tonglu", "sync", "--url", county_site.url, "--host", "tonglu.localhost"]
    args += ["--queue", str(queue), "--terminal-id", "TL-BUS-0001", "--key", str(terminal_key)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "trusting platform key public:s1 on first use (pin it with --platform-key)" in first
    assert "keys of tonglu issued 2026-11-24 08:40:00 +08:00: 3" in first
    assert "hotlist version 4: 1 cards blocked" in first
    assert main(args) == 0  # up to date: 304; the platform key held is trusted now
    assert "first use" not in capsys.readouterr().out
    keys_path = "/.well-known/citycard-keys.json"
    assert county_site.seen == [
        (keys_path, "tonglu.localhost", None),  # public: not signed
        ("/terminal/v1/hotlist?since=0", "tonglu.localhost", "TL-BUS-0001:k1"),
        (keys_path, "tonglu.localhost", None),
        ("/terminal/v1/hotlist?since=4", "tonglu.localhost", "TL-BUS-0001:k1"),
    ]
    store = TapStore(queue)
    assert "3301000000000000017" in hotlist_held(store)
    store.close()


def test_sync_with_a_pinned_platform_key_refuses_keys_signed_by_another(
    capsys, tmp_path, county_site, terminal_key
):
    pin = tmp_path / "platform-key.json"
    pin.write_text(json.dumps({"public:s1": b64encode(public_key_bytes(Ed25519PrivateKey.generate()))}))
    args = ["--tenant", "tonglu", "sync", "--url", county_site.url, "--platform-key", str(pin)]
    args += [
        "--queue",
        str(tmp_path / "taps.sqlite"),
        "--terminal-id",
        "TL-BUS-0001",
        "--key",
        str(terminal_key),
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "sync: the keys document was refused: signature by 'public:s1' does not match the payload" in err
    assert "refused: signed by unknown key 'tonglu:s1'" in err  # and the hotlist with it: no keys held


def test_upload_without_the_countys_key_is_one_line_and_keeps_the_batch_until_sync(
    capsys, tmp_path, county_site, terminal_key
):
    """The audit's case: a county terminal holding only its city's key (the old `fares export --keys-out`)."""
    queue = tmp_path / "taps.sqlite"
    store = TapStore(queue)
    record = {"card_no": "3301000100000000017", "card_counter": 1, "terminal_seq": 1}
    store.tap_complete(store.tap_pending(record), record)
    store.close()
    city_keys = tmp_path / "city-keys.json"
    city_keys.write_text(json.dumps({"hangzhou:s1": b64encode(public_key_bytes(kit.HANGZHOU))}))
    terminal = ["--queue", str(queue), "--terminal-id", "TL-BUS-0001", "--key", str(terminal_key)]
    upload = ["--tenant", "tonglu", "upload", "--url", county_site.url + "/terminal/v1/batches", *terminal]

    assert main(upload) == 2  # stopped with the batch still queued
    assert "upload: this terminal holds no keys" in capsys.readouterr().err
    assert main([*upload, "--tenant-keys", str(city_keys)]) == 2  # queued, not set aside: run sync
    out, err = capsys.readouterr()
    assert "0 batches acknowledged, 0 set aside" in out
    assert err.count("\n") == 1 and err.startswith("upload: batch TL-BUS-0001-")
    assert (
        "signed by unknown key 'tonglu:s1', which this terminal does not hold; the batch stays queued" in err
    )
    assert "run `citycard-terminal sync` to fetch the keys" in err
    store = TapStore(queue)
    state = store.queue_state()
    assert len(state.batches) == 1 and state.set_aside == []
    store.close()

    assert main(["--tenant", "tonglu", "sync", "--url", county_site.url, *terminal]) == 0
    assert main(upload) == 0
    out = capsys.readouterr().out
    assert ": accepted 1 duplicates None rejected 0" in out and "1 batch acknowledged, 0 set aside" in out
    store = TapStore(queue)
    assert store.taps() == []
    store.close()


@pytest.mark.pcsc
def test_psam_load_then_simulate_with_the_psam_in_its_pcsc_reader(pcscd, inserted, tmp_path, capsys):
    import json

    from citycard.terminal_kit.card.psam import VirtualPsam
    from citycard.terminal_kit.card.vpcd import PSAM_PORT
    from citycard.terminal_kit.devkeys import SIM_KEYS, SIM_PSAM_TRANSPORT_KEY
    from citycard.terminal_kit.provision import audit_verify
    from tests.terminal_kit.conftest import PSAM_READER

    blank = VirtualPsam(
        serial=bytes.fromhex("86010000000000000007"),
        terminal_no=bytes.fromhex("330100000007"),
        transport_key=SIM_PSAM_TRANSPORT_KEY,
    )
    holder = inserted(blank, port=PSAM_PORT, reader=PSAM_READER)
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps(
            [
                {
                    "usage": "purchase",
                    "issuer": "330400",
                    "version": 1,
                    "algorithm": "SM4",
                    "key": SIM_KEYS.purchase_master.hex(),
                },
                {"usage": "purchase", "issuer": "330400", "version": 1, "algorithm": "SM4", "key": "00" * 16},
            ]
        )
    )
    (tmp_path / "transport.key").write_text(SIM_PSAM_TRANSPORT_KEY.hex())
    args = ["psam-load", "--keys", str(keys), "--transport-key", str(tmp_path / "transport.key")]
    args += ["--actor", "王工", "--audit", str(tmp_path / "audit.jsonl")]
    assert main(args) == 0
    assert "2 keys loaded" in capsys.readouterr().out
    assert (
        audit_verify(tmp_path / "audit.jsonl") == 2 and len(blank.keys) == 1
    )  # the second replaced the first
    holder.remove()
    # The simulator puts its own (provisioned) PSAM in that reader and its cards in the other.
    assert main(["simulate", "--taps", "3", "--cards", "2", "--pcsc", "--queue", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 taps" in out and "pcscd+vpcd" in out
    assert json.loads((tmp_path / "psam.json").read_text())["ttc"] >= 1


def test_upload_reports_rejected_taps_and_set_aside_batches_and_queue_requeues_or_drops_them(
    capsys, tmp_path
):
    import base64
    import json

    from cryptography.hazmat.primitives import serialization

    from citycard.terminal_kit.store import TapStore
    from tests.terminal_kit.backoffice import (
        BATCH_ARGS,
        TENANT_KEYS,
        TERMINAL_KEY,
        Backoffice,
        queue_with_taps,
        refusal,
        unavailable,
    )

    queue = str(tmp_path / "taps.sqlite")
    store = TapStore(queue)
    queue_with_taps(store, 7, bad=frozenset({4}))
    a = store.batch_open(max_taps=2, **BATCH_ARGS)["payload"]["batch_id"]
    store.close()
    key_file, keys_file = tmp_path / "terminal.key", tmp_path / "keys.json"
    raw = TERMINAL_KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    key_file.write_text(base64.b64encode(raw).decode())
    keys_file.write_text(json.dumps({k: base64.b64encode(v).decode() for k, v in TENANT_KEYS.items()}))

    def upload(office, *more):
        args = ["upload", "--url", office.url, "--queue", queue, "--terminal-id", "HZ-BUS-0001"]
        args += ["--key", str(key_file), "--tenant-keys", str(keys_file), "--max-taps", "2"]
        return main([*args, *more])

    def queue_command(*action):
        assert main(["queue", "--queue", queue, *action]) == 0
        return capsys.readouterr().out

    out = queue_command()
    assert f"{queue}: 1 batch waiting (2 taps), 5 taps not yet in a batch, 0 taps pending or torn" in out
    assert f"  {a}  created " in out and "set aside: 0 batches (0 taps)" in out

    with Backoffice(script=[refusal(409), None, refusal(413), None]) as office:
        assert upload(office) == 1
    out = capsys.readouterr().out
    b, c = office.received[1][0], office.received[2][0]
    assert f"{b}: accepted 1 duplicates 0 rejected 1" in out
    assert "  tap 4 (card 3304000100000000019, counter 4) rejected: amount_fen: must be 0 or more" in out
    assert (
        f"{a}: set aside (2 taps), refused with 409 batch_conflict: batch id reused with different content; "
        f"`citycard-terminal queue --queue {queue}` to requeue or drop it"
    ) in out
    assert f"{c}: set aside (2 taps), refused with 413 too_large" in out
    assert "2 batches acknowledged, 2 set aside" in out

    out = queue_command()
    assert f"{queue}: 0 batches waiting (0 taps), 0 taps not yet in a batch" in out
    assert "set aside: 2 batches (4 taps)" in out
    assert (
        f"  {a}  2 taps  409 batch_conflict  at " in out and ": batch id reused with different content" in out
    )
    assert "requeue BATCH_ID [--rebatch" in out and "drop BATCH_ID --reason WHY" in out

    assert f"{a}: requeued (2 taps); its taps go in a new batch" in queue_command("requeue", a, "--rebatch")
    assert f"{c}: dropped, 2 taps will not be uploaded (taps of a test)" in queue_command(
        "drop", c, "--reason", "taps of a test"
    )
    assert main(["queue", "--queue", queue, "requeue", c]) == 1
    assert (
        f"no batch {c!r} is set aside; `citycard-terminal queue --queue {queue}`" in capsys.readouterr().err
    )
    out = queue_command()
    assert "0 batches waiting (0 taps), 2 taps not yet in a batch" in out and "set aside: 0 batches" in out
    assert f"  {a}  rebatched at " in out and "(was 409 batch_conflict, 2 taps)" in out
    assert f"  {c}  dropped at " in out and ": taps of a test (was 413 too_large, 2 taps)" in out

    with Backoffice(script=[unavailable("30")]) as office:
        assert upload(office, "--give-up-after", "10") == 2  # the next wait would end past the deadline
        captured = capsys.readouterr()
        assert (
            "503 unavailable: the database is unavailable" in captured.err
            and "trying again" not in captured.err
        )
        assert "upload: gave up on batch" in captured.err and "(it stays queued)" in captured.err
        assert upload(office) == 0
    assert "1 batch acknowledged, 0 set aside" in capsys.readouterr().out
    assert sorted(office.stored) == [1, 2]
    assert "0 batches waiting (0 taps), 0 taps not yet in a batch" in queue_command()


def test_validate_verifies_its_rules_with_the_rule_keys_sync_fetched(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(sign_document({"kind": "fare_rules"}, key=kit.TONGLU, key_id="tonglu:s1")))
    args = argparse.Namespace(rules=str(rules), rules_keys=None, fare=200)
    store = TapStore(tmp_path / "taps.sqlite")
    with pytest.raises(SystemExit, match=r"--rules needs --rules-keys .* or keys from `sync`"):
        _fare(args, store)
    keyring_take(kit.keys_document(), store=store, tenant="tonglu", pinned=None, now=kit.KEYS_NOW)
    # Held now: hangzhou:s1 for fare rules; tonglu:s1 signs acknowledgements and hotlists, not rules.
    with pytest.raises(SystemExit, match="rule document refused: signed by unknown key 'tonglu:s1'"):
        _fare(args, store)
    store.close()

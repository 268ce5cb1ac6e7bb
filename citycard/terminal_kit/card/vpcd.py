"""A virtual card behind pcscd: a client of the vsmartcard ``vpcd`` driver's socket.

vpcd (in pcscd) listens on TCP 35963 for reader "Virtual PCD 00 00" and on 35964 for "Virtual PCD 00 01"
(the terminal's PSAM slot); connecting puts a card in that reader, closing the socket removes it. Every
message both ways is a 2-byte big-endian length and the bytes. vpcd defines four 1-byte control messages
(00 power off, 01 power on, 02 reset: no answer; 04 get ATR: answered with the card's ATR). Every other
message is a command APDU and gets the card's response APDU, a 1-byte one included (``6700``: a command
has at least four bytes), so no message ever leaves vpcd waiting for an answer.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from citycard.terminal_kit.card.iso import CardTorn, IsoCard

VPCD_PORT = 35963  # reader "Virtual PCD 00 00"
PSAM_PORT = 35964  # reader "Virtual PCD 00 01"
POWER_OFF, POWER_ON, RESET, GET_ATR = 0, 1, 2, 4
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class VpcdCard:
    """Puts a virtual card (citizen card or PSAM) into a vpcd reader for as long as it is inserted."""

    def __init__(self, card: IsoCard, *, host: str = "127.0.0.1", port: int = VPCD_PORT) -> None:
        self.card = card
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def inserted(self) -> bool:
        return self._sock is not None

    def insert(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True, name="vpcd-card")
        self._thread.start()

    def remove(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None
        self.card.reset()

    def _recv_exact(self, sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            # vpcd writes the length and the APDU separately; acknowledging at once keeps its second write
            # from waiting out our delayed ACK (~40 ms per APDU otherwise).
            if _QUICKACK is not None:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _send(self, sock: socket.socket, data: bytes) -> None:
        sock.sendall(struct.pack(">H", len(data)) + data)

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                (length,) = struct.unpack(">H", self._recv_exact(sock, 2))
                message = self._recv_exact(sock, length)
                if length == 1 and message[0] == GET_ATR:
                    self._send(sock, self.card.atr)
                    continue
                if length == 1 and message[0] in (POWER_OFF, RESET, POWER_ON):
                    self.card.reset()
                    continue
                try:
                    answer = self.card.process(message)
                except CardTorn:
                    break  # the card leaves the field with the command unanswered
                self._send(sock, answer)
        except (EOFError, OSError):
            pass
        finally:
            if self._sock is sock:
                self._sock = None
                with contextlib.suppress(OSError):
                    sock.close()

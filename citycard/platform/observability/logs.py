"""Log lines as JSON (one object per line) for machines, or plain text on a terminal.

``CITYCARD_LOG_FORMAT``: ``json``, ``text``, or ``auto`` (the default): JSON unless stderr is a terminal.
Every record becomes ``{"time", "level", "logger", "message", …}`` plus the fields a caller passed as
``extra={"fields": {...}}`` (the request and task lines), the request id of the request being answered,
and the formatted traceback (``exc``) when there is one.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys

# The id of the request this thread (or task) is answering: put on every line logged meanwhile.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "citycard_request_id", default=None
)

FORMATS = ("auto", "json", "text")


def log_format(value: str | None, *, stream=None) -> str:
    """``json`` or ``text`` for the setting ``value`` (``auto``: JSON unless ``stream``, stderr, is a tty)."""
    chosen = (value or "auto").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"CITYCARD_LOG_FORMAT is {value!r}; use one of {', '.join(FORMATS)}")
    if chosen == "auto":
        stream = stream if stream is not None else sys.stderr
        isatty = getattr(stream, "isatty", None)
        return "text" if isatty is not None and isatty() else "json"
    return chosen


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside strings are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        request_id = request_id_var.get()
        if request_id is not None:
            line.setdefault("request_id", request_id)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The plain line for a person at a terminal; a request or task line's fields are in its message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

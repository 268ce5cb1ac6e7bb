"""PostgreSQL array parameters as one literal (``'{…}'``), for set-wise statements over hundreds of values.

psycopg2 sends a Python list as ``ARRAY['a', 'b', …]``: one expression per element for the server to
parse and coerce, and a datetime costs the client an adapter call each. For the checks of a 500-tap
upload that was more than the lookups themselves. ``pg_array(values)`` is the same array as a single
text literal, read by the element type's input function; cast it in the SQL: ``%s::timestamptz[]``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any


def pg_array(values: Iterable[Any]) -> str:
    """``{…}`` for ints, strings, datetimes (ISO 8601; naive ones read in the session's time zone, as
    psycopg2 sends them) and None (NULL). Strings are always quoted, so any text is safe."""
    parts = []
    for value in values:
        if type(value) is str:
            if "\\" in value or '"' in value:
                value = value.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'"{value}"')
        elif value is None:
            parts.append("NULL")
        elif type(value) is int:
            parts.append(str(value))
        elif isinstance(value, dt.datetime):
            parts.append(f'"{value.isoformat()}"')
        else:
            text = str(value)
            if "\\" in text or '"' in text:
                text = text.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'"{text}"')
    return "{" + ",".join(parts) + "}"

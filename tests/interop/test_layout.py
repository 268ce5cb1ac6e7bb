"""The shape of the interop services package (docs/clearing.md, "Where the code is"): every public service
is keyword-only and listed with its module in the package's table, and every message kind the platform
takes has its handler registered by importing the package."""

from __future__ import annotations

import inspect
import re

from citycard.interop import services
from citycard.interop.services import messages

TOPICS = (
    "agreements",
    "messages",
    "records",
    "cycles",
    "validation",
    "netting",
    "reconciliation",
    "disputes",
    "hotlist",
)
# A decorator factory: ``@message_handler("clearing.dispute")``.
POSITIONAL_ALLOWED = {"message_handler"}


def _public_functions(module):
    return {
        name: fn
        for name, fn in vars(module).items()
        if inspect.isfunction(fn) and not name.startswith("_") and fn.__module__ == module.__name__
    }


def _table_rows() -> dict[str, str]:
    """{module: the text of its row, continuation lines included} from the package docstring's table."""
    rows: dict[str, str] = {}
    current = None
    for line in services.__doc__.splitlines():
        match = re.match(r"``(\w+)``\s{2,}(.*)", line)
        if match:
            current = match.group(1)
            rows[current] = match.group(2)
        elif current and line.startswith(" " * 20):
            rows[current] += " " + line.strip()
        elif line.startswith("="):
            current = None
    return rows


def test_every_topic_is_a_module_of_the_package_and_a_row_of_its_table():
    assert set(TOPICS) == set(services.__all__)
    assert set(_table_rows()) == set(TOPICS)


def test_every_public_service_is_keyword_only_and_named_in_its_modules_row():
    rows = _table_rows()
    for topic in TOPICS:
        module = getattr(services, topic)
        functions = _public_functions(module)
        assert functions, topic
        for name, fn in functions.items():
            assert f"``{name}``" in rows[topic], f"{topic}.{name} is missing from the package's table"
            if name in POSITIONAL_ALLOWED:
                continue
            positional = [
                p.name
                for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            assert positional == [], f"{topic}.{name} takes {positional} positionally"


def test_importing_the_package_registers_every_message_kind_the_platform_takes():
    assert set(messages._HANDLERS) == {
        "clearing.records",
        "medical.claim",
        "clearing.dispute",
        "clearing.reconciliation",
        "hotlist.update",
    }

"""Crawl every admin page the demo's users can reach, for the reconstruction test (tests/e2e/test_demo.py).

Run as ``python tests/e2e/privacy_crawl.py OUT`` with ``CITYCARD_DATA_DIR`` naming the demo's data
directory (its embedded PostgreSQL running). On each site (every tenant and the platform) it signs in as
that site's users, one per role, and follows every link of the pages it reaches, changelists with all their
pages and a sample of each model's change pages, writing:

* ``OUT/pages.jsonl``: one ``{"schema", "url", "status", "html"}`` per page, scripts and icons left out;
* ``OUT/truth.json``: each cardholder's real ID and phone numbers (decrypted here, for the evaluator only:
  the attacker of tests/privacy_attack.py sees the pages and the dump, never this file).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter, deque
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

CHANGE_PAGES_PER_MODEL = 5
CARDHOLDER_PAGES_PER_SITE = 60
_HREF = re.compile(r'href="([^"#]*)"')
_CHANGE = re.compile(r"^/admin/(\w+)/(\w+)/[^/]+/")
_SKIP = ("/logout", "/delete/", "/password/", "/jsi18n", "/static/", "/r/")
_NOISE = re.compile(r"<(script|svg|style)\b.*?</\1>", re.S)


def _normalise(href: str) -> str | None:
    parts = urlsplit(href.replace("&amp;", "&"))
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    if any(s in parts.path for s in _SKIP):
        return None
    query = [(k, v) for k, v in parse_qsl(parts.query) if k == "p"]  # pages of a list, not filters
    return parts.path + (f"?{urlencode(query)}" if query else "")


def crawl(client, schema: str, start: list[str], sink) -> Counter:
    seen: set[str] = set()
    per_model: Counter = Counter()
    statuses: Counter = Counter()
    queue = deque(start)
    while queue:
        url = queue.popleft()
        if url in seen:
            continue
        seen.add(url)
        change = _CHANGE.match(url)
        if change and not url.endswith("/add/"):
            model = change.group(2)
            limit = CARDHOLDER_PAGES_PER_SITE if model == "cardholder" else CHANGE_PAGES_PER_MODEL
            per_model[model] += 1
            if per_model[model] > limit:
                continue
        response = client.get(url)
        statuses[response.status_code // 100 * 100] += 1
        if response.status_code >= 500:
            raise SystemExit(f"{schema} {url} answered {response.status_code}")
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        html = _NOISE.sub("", response.content.decode())
        sink.write(
            json.dumps({"schema": schema, "url": url, "status": response.status_code, "html": html}) + "\n"
        )
        for href in _HREF.findall(html):
            target = _normalise(href)
            if target and target not in seen:
                queue.append(target)
    return statuses


def main(out: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "citycard.platform.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client
    from django_tenants.utils import tenant_context

    from citycard.platform.models import Tenant, User
    from citycard.tenants.cards.models import Cardholder
    from citycard.tenants.cards.selectors import cardholder_pii

    out.mkdir(parents=True, exist_ok=True)
    truth = []
    tenants = list(Tenant.objects.exclude(schema_name="public").order_by("code"))
    for tenant in tenants:
        with tenant_context(tenant):
            for holder in Cardholder.objects.order_by("pk"):
                secret = cardholder_pii(cardholder=holder)
                truth.append(
                    {
                        "schema": tenant.schema_name,
                        "pk": holder.pk,
                        "id": secret["id_number"],
                        "phone": secret["phone"],
                    }
                )
    (out / "truth.json").write_text(json.dumps(truth), encoding="utf-8")
    with (out / "pages.jsonl").open("w", encoding="utf-8") as sink:
        sites = [("public", None, settings.BASE_DOMAIN)] + [
            (t.schema_name, t, f"{t.code}.{settings.BASE_DOMAIN}") for t in tenants
        ]
        for schema, tenant, host in sites:
            users = User.objects.filter(is_active=True, tenant=tenant).order_by("role", "pk")
            for role in sorted({u.role for u in users}):
                user = next(u for u in users if u.role == role)
                client = Client(HTTP_HOST=host)
                client.force_login(user)
                statuses = crawl(client, schema, ["/", "/admin/"], sink)
                print(f"{host} as {user.username} ({role}): {dict(statuses)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

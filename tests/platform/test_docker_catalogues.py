"""The image compiles every translation catalogue, as `make messages` does on a checkout: without the .mo
files a container would read English."""

from __future__ import annotations

import gettext
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPILE = (
    "find citycard -path '*/LC_MESSAGES/*.po' -exec sh -c 'msgfmt --check -o \"${1%.po}.mo\" \"$1\"' _ {} \\;"
)


def test_the_dockerfile_compiles_the_catalogues_before_installing():
    text = (ROOT / "infra" / "Dockerfile").read_text()
    assert COMPILE in text
    assert text.index(COMPILE) < text.index("pip install")


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="gettext's msgfmt is installed by make test")
def test_its_command_builds_a_catalogue_for_every_po(tmp_path):
    pos = sorted(ROOT.glob("citycard/**/LC_MESSAGES/*.po"))
    assert {p.name for p in pos} == {"django.po", "citycard_terminal.po"}
    for po in pos:
        target = tmp_path / po.relative_to(ROOT)
        target.parent.mkdir(parents=True)
        shutil.copy(po, target)
    subprocess.run(["sh", "-c", COMPILE], cwd=tmp_path, check=True)
    for po in pos:
        mo = tmp_path / po.relative_to(ROOT).with_suffix(".mo")
        with mo.open("rb") as f:
            catalogue = gettext.GNUTranslations(f)
        assert len(catalogue._catalog) > 200, mo  # every entry of the committed catalogue, Chinese

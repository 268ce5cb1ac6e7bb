"""`citycard medical --tenant X …`: the same services as the admin pages, yuan and percent typed, one
line for a refusal."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import tenant_context

from citycard.platform.audit.models import AuditEntry
from citycard.tenants.medical.models import CatalogueItem, Policy

pytestmark = pytest.mark.django_db


def medical(*args: str) -> str:
    out = io.StringIO()
    call_command("medical", *args, stdout=out)
    return out.getvalue()


def test_policy_set_and_list_in_yuan_and_percent(tenant):
    text = medical(
        "--tenant", "dongguan", "policy", "set", "--year", "2026", "--deductible", "1,200.50", "--cap",
        "300000", "--ratio", "drug=80", "--ratio", "treatment=92.5",
    )  # fmt: skip
    assert "起付线 ¥1,200.50" in text and "封顶线 ¥300,000.00" in text and "treatment 92.5%" in text
    with tenant_context(tenant("dongguan")):
        policy = Policy.objects.get(year=2026, category="employee")
        assert (policy.deductible_fen, policy.ratios_bps) == (120050, {"drug": 8000, "treatment": 9250})
        assert AuditEntry.objects.filter(action="medical.policy_set", actor="cli").count() == 1
    # A residents' policy from July; then the list.
    medical(
        "--tenant", "dongguan", "policy", "set", "--category", "resident", "--year", "2026", "--from",
        "2026-07-01", "--deductible", "0", "--cap", "100000", "--ratio", "drug=60",
    )  # fmt: skip
    listing = medical("--tenant", "dongguan", "policy", "list", "--year", "2026")
    assert "2026-07-01 – 2026-12-31" in listing and "2026-01-01 – 2026-12-31" in listing
    for bad, message in (
        (["--deductible", "1.005"], "最多两位小数"),
        (["--ratio", "drug"], "类别=百分比"),
        (["--ratio", "dental=50"], "没有项目类别 dental"),  # refusals in Chinese first
        (["--from", "2026-03-01"], "重叠"),
    ):
        args = {"--deductible": "0", "--cap": "1"}
        extra = list(bad)
        if extra[0] in args:
            args[extra[0]] = extra[1]
            extra = []
        flat = [x for pair in args.items() for x in pair]
        with pytest.raises(CommandError, match=message):
            medical("--tenant", "dongguan", "policy", "set", "--year", "2026", *flat, *extra)


def test_catalogue_set_import_export_and_list(tenant, tmp_path):
    text = medical(
        "--tenant", "shenzhen", "catalogue", "set", "D002", "--name", "头孢克肟片", "--category", "drug",
        "--price", "58", "--class", "B", "--self-pay", "10",
    )  # fmt: skip
    assert "D002 头孢克肟片：drug，B 乙类，¥58.00" in text
    source = tmp_path / "catalogue.csv"
    source.write_text(
        "code,name,category,unit_price_fen,class\nT001,CT 检查,treatment,30000,甲\nM001,耗材,material,x,丙\n",
        encoding="utf-8",
    )
    errors = tmp_path / "bad.csv"
    text = medical("--tenant", "shenzhen", "catalogue", "import", str(source), "--errors", str(errors))
    assert "2 行：新增 1 项，修改 0 项，未变 0 项；错误 1 行" in text
    assert errors.read_text().splitlines()[1].startswith("3,")
    exported = tmp_path / "out.csv"
    medical("--tenant", "shenzhen", "catalogue", "export", "--out", str(exported))
    assert exported.read_text().splitlines() == [
        "code,name,category,unit_price_fen,class,self_pay_bps,active",
        "D002,头孢克肟片,drug,5800,B,1000,true",
        "T001,CT 检查,treatment,30000,A,0,true",
    ]
    listing = medical("--tenant", "shenzhen", "catalogue", "list", "--class", "B")
    assert "D002" in listing and "T001" not in listing and "10%" in listing
    medical(
        "--tenant", "shenzhen", "catalogue", "set", "D002", "--name", "头孢克肟片", "--category", "drug",
        "--price", "58", "--class", "B", "--self-pay", "10", "--withdrawn",
    )  # fmt: skip
    with tenant_context(tenant("shenzhen")):
        assert not CatalogueItem.objects.get(code="D002").active
    with pytest.raises(CommandError, match="只有乙类"):
        medical(
            "--tenant", "shenzhen", "catalogue", "set", "X", "--name", "x", "--category", "drug", "--price",
            "1", "--class", "A", "--self-pay", "5",
        )  # fmt: skip


def test_claims_claim_insured_and_year_close(world):
    _, _, card = world
    listing = medical("--tenant", "shenzhen", "claims")
    assert "shenzhen-W1" in listing and "¥286.00" in listing and "已审核 (adjudicated)" in listing
    shown = medical("--tenant", "dongguan", "claim", "shenzhen-W1")
    assert "目录外：自费 (not_in_catalogue)" in shown and "计入起付线" in shown and "80%" in shown
    as_json = medical("--tenant", "shenzhen", "claim", "shenzhen-W1", "--json")
    assert '"fund_fen": 28600' in as_json and '"patient_fen": 16400' in as_json
    year = medical("--tenant", "dongguan", "insured", card, "--year", "2026")
    assert "起付线 ¥100.00：已用 ¥100.00，剩余 ¥0.00" in year
    assert "封顶线 ¥1,000.00：统筹已付 ¥286.00，剩余 ¥714.00" in year and "已审核 1 笔报销" in year
    year = medical("--tenant", "dongguan", "insured", card, "--year", "2026", "--set-category", "resident")
    assert "城乡居民医保" in year and "拒绝（no_policy）" in year
    assert "2025 年度已清算" in medical("--tenant", "dongguan", "year", "close", "2025")
    with pytest.raises(CommandError, match=r"由 .* 关账"):
        medical("--tenant", "dongguan", "year", "close", "2025")
    with pytest.raises(CommandError, match="此处没有报销单 'nope'"):
        medical("--tenant", "dongguan", "claim", "nope")

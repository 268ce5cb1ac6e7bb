"""Policies per insured category (职工医保 / 城乡居民医保) with the dates they are in force, each person's
insured category per year, closed years, withdrawn catalogue items, and claims that keep their lines'
outcomes, the hospital's own id and the policy they were adjudicated under.

Existing policies become employees' policies in force the whole of their year; existing catalogue items
keep their class (a self-pay share on anything but 乙类 is dropped: it never applied); ``bed`` becomes
``facility``."""

import django.db.models.deletion
from django.db import migrations, models


def forward(apps, schema_editor):
    Policy = apps.get_model("medical", "Policy")
    CatalogueItem = apps.get_model("medical", "CatalogueItem")
    for policy in Policy.objects.all():
        policy.effective_from = f"{policy.year}-01-01"
        policy.effective_to = f"{policy.year}-12-31"
        policy.save(update_fields=["effective_from", "effective_to"])
    CatalogueItem.objects.exclude(coverage="B").update(self_pay_bps=0)
    CatalogueItem.objects.filter(category="bed").update(category="facility")


class Migration(migrations.Migration):
    dependencies = [("medical", "0001_initial")]

    operations = [
        # --- names, labels and choices -----------------------------------------------------------------
        migrations.AlterModelOptions(
            name="catalogueitem",
            options={"ordering": ["code"], "verbose_name": "catalogue item", "verbose_name_plural": "catalogue (医保目录)"},
        ),
        migrations.AlterModelOptions(
            name="claim",
            options={"ordering": ["-treated_at", "-id"], "verbose_name": "claim", "verbose_name_plural": "claims (异地就医结算)"},
        ),
        migrations.AlterModelOptions(
            name="insuredyear",
            options={"ordering": ["-year", "card_no"], "verbose_name": "insured person's year", "verbose_name_plural": "insured persons' years (年度累计)"},
        ),
        migrations.AlterModelOptions(
            name="policy",
            options={"ordering": ["-year", "category", "effective_from"], "verbose_name": "policy (待遇)", "verbose_name_plural": "policies (待遇)"},
        ),
        migrations.AlterField(
            model_name="catalogueitem",
            name="category",
            field=models.CharField(choices=[("drug", "Drugs (药品)"), ("treatment", "Examinations and treatment (诊疗项目)"), ("material", "Medical materials (医用耗材)"), ("facility", "Beds and facilities (医疗服务设施)")], max_length=20, verbose_name="category"),
        ),
        migrations.AlterField(
            model_name="catalogueitem",
            name="code",
            field=models.CharField(max_length=30, unique=True, verbose_name="code"),
        ),
        migrations.AlterField(
            model_name="catalogueitem",
            name="coverage",
            field=models.CharField(choices=[("A", "甲类: fully covered"), ("B", "乙类: covered after the patient's self-pay share"), ("C", "丙类: self-pay")], max_length=1, verbose_name="class"),
        ),
        migrations.AlterField(
            model_name="catalogueitem",
            name="name",
            field=models.CharField(max_length=100, verbose_name="name"),
        ),
        migrations.AlterField(
            model_name="catalogueitem",
            name="self_pay_bps",
            field=models.PositiveIntegerField(default=0, help_text="乙类 only: the share the patient pays first, in basis points (1000 = 10%).", verbose_name="self-pay share (bps)"),
        ),
        migrations.AlterField(
            model_name="catalogueitem",
            name="unit_price_fen",
            field=models.BigIntegerField(verbose_name="unit price (fen)"),
        ),
        migrations.AlterField(
            model_name="claim",
            name="card_no",
            field=models.CharField(max_length=19, verbose_name="card number"),
        ),
        migrations.AlterField(
            model_name="claim",
            name="claim_id",
            field=models.CharField(max_length=60, verbose_name="claim id"),
        ),
        migrations.AlterField(
            model_name="claim",
            name="department",
            field=models.CharField(blank=True, max_length=100, verbose_name="hospital"),
        ),
        migrations.AlterField(
            model_name="claim",
            name="eligible",
            field=models.JSONField(help_text="{category: eligible fen}", verbose_name="eligible (fen) per category"),
        ),
        migrations.AlterField(
            model_name="claim",
            name="fund_fen",
            field=models.BigIntegerField(blank=True, null=True, verbose_name="fund share (fen)"),
        ),
        migrations.AlterField(
            model_name="claim",
            name="items",
            field=models.JSONField(default=list, verbose_name="lines"),
        ),
        migrations.AlterField(
            model_name="claim",
            name="patient_fen",
            field=models.BigIntegerField(blank=True, null=True, verbose_name="patient share (fen)"),
        ),
        migrations.AlterField(
            model_name="claim",
            name="role",
            field=models.CharField(choices=[("treatment", "Submitted by our hospital (treatment place)"), ("insured", "Adjudicated for our insured person")], max_length=10, verbose_name="role"),
        ),
        migrations.AlterField(
            model_name="claim",
            name="total_fen",
            field=models.BigIntegerField(verbose_name="total (fen)"),
        ),
        migrations.AlterField(
            model_name="claim",
            name="treated_at",
            field=models.DateTimeField(verbose_name="treated at"),
        ),
        migrations.AlterField(
            model_name="insuredyear",
            name="card_no",
            field=models.CharField(max_length=19, verbose_name="card number"),
        ),
        migrations.AlterField(
            model_name="insuredyear",
            name="deductible_used_fen",
            field=models.BigIntegerField(default=0, verbose_name="deductible used (fen)"),
        ),
        migrations.AlterField(
            model_name="insuredyear",
            name="fund_paid_fen",
            field=models.BigIntegerField(default=0, verbose_name="fund paid (fen)"),
        ),
        migrations.AlterField(
            model_name="insuredyear",
            name="year",
            field=models.PositiveIntegerField(verbose_name="year"),
        ),
        migrations.AlterField(
            model_name="policy",
            name="annual_cap_fen",
            field=models.BigIntegerField(help_text="封顶线: the most the fund pays for one person in a year.", verbose_name="annual cap (fen)"),
        ),
        migrations.AlterField(
            model_name="policy",
            name="deductible_fen",
            field=models.BigIntegerField(help_text="起付线: eligible spending the insured pays first each year.", verbose_name="deductible (fen)"),
        ),
        migrations.AlterField(
            model_name="policy",
            name="ratios_bps",
            field=models.JSONField(help_text="报销比例: {item category: basis points}; a category not listed is not reimbursed.", verbose_name="reimbursement ratios (bps)"),
        ),
        # --- policy: category and period ---------------------------------------------------------------
        migrations.AlterField(model_name="policy", name="year", field=models.PositiveIntegerField(verbose_name="year")),
        migrations.AddField(
            model_name="policy",
            name="category",
            field=models.CharField(
                choices=[
                    ("employee", "Employees' basic medical insurance (职工医保)"),
                    ("resident", "Urban and rural residents' medical insurance (城乡居民医保)"),
                ],
                default="employee",
                max_length=10,
                verbose_name="insured category",
            ),
        ),
        migrations.AddField(
            model_name="policy",
            name="effective_from",
            field=models.DateField(null=True, verbose_name="in force from"),
        ),
        migrations.AddField(
            model_name="policy",
            name="effective_to",
            field=models.DateField(null=True, verbose_name="in force until"),
        ),
        # --- insured years, closed years ---------------------------------------------------------------
        migrations.AddField(
            model_name="insuredyear",
            name="category",
            field=models.CharField(
                choices=[
                    ("employee", "Employees' basic medical insurance (职工医保)"),
                    ("resident", "Urban and rural residents' medical insurance (城乡居民医保)"),
                ],
                default="employee",
                max_length=10,
                verbose_name="insured category",
            ),
        ),
        migrations.CreateModel(
            name="ClosedYear",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("year", models.PositiveIntegerField(unique=True, verbose_name="year")),
                ("closed_at", models.DateTimeField(verbose_name="closed at")),
                ("closed_by", models.CharField(max_length=150, verbose_name="closed by")),
            ],
            options={
                "verbose_name": "closed year",
                "verbose_name_plural": "closed years (年度清算)",
                "ordering": ["-year"],
            },
        ),
        # --- catalogue ---------------------------------------------------------------------------------
        migrations.AddField(
            model_name="catalogueitem",
            name="active",
            field=models.BooleanField(
                default=True,
                help_text="A withdrawn item is outside the catalogue: the patient pays it.",
                verbose_name="in the catalogue",
            ),
        ),
        # --- claims ------------------------------------------------------------------------------------
        migrations.AddField(
            model_name="claim",
            name="hospital_claim_no",
            field=models.CharField(blank=True, default="", max_length=40, verbose_name="hospital's claim id"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="claim",
            name="request_sha256",
            field=models.CharField(blank=True, default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="claim",
            name="submitted_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="submitted at"),
        ),
        migrations.AddField(
            model_name="claim",
            name="submitted_by",
            field=models.CharField(blank=True, default="", max_length=150, verbose_name="submitted by"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="claim",
            name="insured_category",
            field=models.CharField(
                blank=True,
                choices=[
                    ("employee", "Employees' basic medical insurance (职工医保)"),
                    ("resident", "Urban and rural residents' medical insurance (城乡居民医保)"),
                ],
                default="",
                max_length=10,
                verbose_name="insured category",
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="claim",
            name="policy",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="claims",
                to="medical.policy",
                verbose_name="policy",
            ),
        ),
        migrations.AddField(
            model_name="claim",
            name="refusal",
            field=models.CharField(
                blank=True,
                default="",
                help_text="Why nothing of the claim could be adjudicated (not_insured, year_closed, no_policy).",
                max_length=20,
                verbose_name="refused",
            ),
            preserve_default=False,
        ),
        migrations.RunPython(forward, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="policy",
            name="effective_from",
            field=models.DateField(verbose_name="in force from"),
        ),
        migrations.AlterField(
            model_name="policy",
            name="effective_to",
            field=models.DateField(help_text="Last day in force (inclusive).", verbose_name="in force until"),
        ),
        migrations.AddConstraint(
            model_name="policy",
            constraint=models.UniqueConstraint(fields=("category", "effective_from"), name="policy_once_per_start"),
        ),
        migrations.AddConstraint(
            model_name="policy",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("effective_to__gte", models.F("effective_from")),
                    ("effective_from__year", models.F("year")),
                    ("effective_to__year", models.F("year")),
                ),
                name="policy_period_in_year",
            ),
        ),
        migrations.AddConstraint(
            model_name="policy",
            constraint=models.CheckConstraint(
                condition=models.Q(("annual_cap_fen__gte", 0), ("deductible_fen__gte", 0)),
                name="policy_amounts_not_negative",
            ),
        ),
        migrations.AddConstraint(
            model_name="catalogueitem",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("self_pay_bps__lte", 10000), models.Q(("coverage", "B"), ("self_pay_bps", 0), _connector="OR")
                ),
                name="catalogue_self_pay_only_class_b",
            ),
        ),
        migrations.AddConstraint(
            model_name="insuredyear",
            constraint=models.CheckConstraint(
                condition=models.Q(("deductible_used_fen__gte", 0), ("fund_paid_fen__gte", 0)),
                name="insured_year_not_negative",
            ),
        ),
        migrations.AddIndex(
            model_name="claim",
            index=models.Index(fields=["card_no", "treated_at"], name="claim_card_treated"),
        ),
    ]

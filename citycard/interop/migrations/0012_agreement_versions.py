"""Agreements as dated versions: fees, visitor policy, cut-off and hotlist grace move from the agreement row
to ``AgreementVersion``. Each existing agreement becomes version 1, effective from 2000-01-01 (before any
network existed), so every record and cycle already stored keeps the terms it was priced and cleared by."""

import datetime as dt

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Q

EARLY = dt.date(2000, 1, 1)
VERSIONED = ("visitor_policy", "issuer_fee_bps", "network_fee_bps", "cut_off", "hotlist_grace_minutes")


def forwards(apps, schema_editor):
    RoamingAgreement = apps.get_model("interop", "RoamingAgreement")
    AgreementVersion = apps.get_model("interop", "AgreementVersion")
    for agreement in RoamingAgreement.objects.all():
        AgreementVersion.objects.create(
            agreement=agreement,
            number=1,
            effective_from=EARLY,
            created_at=agreement.created_at,
            created_by="migration",
            note="the agreement as it stood before versions",
            **{name: getattr(agreement, name) for name in VERSIONED},
        )


def backwards(apps, schema_editor):
    RoamingAgreement = apps.get_model("interop", "RoamingAgreement")
    AgreementVersion = apps.get_model("interop", "AgreementVersion")
    for agreement in RoamingAgreement.objects.all():
        latest = AgreementVersion.objects.filter(agreement=agreement).order_by("-effective_from", "-number").first()
        if latest is not None:
            for name in VERSIONED:
                setattr(agreement, name, getattr(latest, name))
            agreement.save(update_fields=list(VERSIONED))


class Migration(migrations.Migration):

    dependencies = [
        ('interop', '0011_cycle_resume'),
    ]

    operations = [
        migrations.CreateModel(
            name='AgreementVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField(help_text='1, 2, 3… per agreement, in the order they were added.')),
                ('effective_from', models.DateField(help_text='The first business date it prices and clears.')),
                ('visitor_policy', models.CharField(choices=[('local_fare', "Visitors pay the acquirer's standard fare"), ('local_discounts', "Visitors get the acquirer's card discounts"), ('home_categories', "Visitors' home categories (elderly, student…) honoured")], default='local_discounts', max_length=20)),
                ('issuer_fee_bps', models.PositiveIntegerField(default=0, help_text='Interchange the issuer keeps from what it owes the acquirer, basis points.')),
                ('network_fee_bps', models.PositiveIntegerField(default=0, help_text="The network operator's fee, borne by the acquirer, basis points.")),
                ('cut_off', models.TimeField(default=dt.time(4, 0), help_text='Asia/Shanghai. Business date D runs from D cut_off to D+1 cut_off.')),
                ('hotlist_grace_minutes', models.PositiveIntegerField(default=60)),
                ('note', models.CharField(blank=True, help_text='Why it changed (the decision, in words).', max_length=200)),
                ('created_at', models.DateTimeField()),
                ('created_by', models.CharField(max_length=150)),
                ('agreement', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='versions', to='interop.roamingagreement')),
            ],
            options={
                'ordering': ['agreement_id', 'effective_from', 'number'],
                'constraints': [
                    models.UniqueConstraint(fields=('agreement', 'number'), name='agreement_version_unique'),
                    models.CheckConstraint(condition=Q(issuer_fee_bps__lte=10000) & Q(network_fee_bps__lte=10000), name='agreement_version_fees_below_100pct'),
                ],
            },
        ),
        migrations.RunPython(forwards, backwards),
        migrations.RemoveConstraint(model_name='roamingagreement', name='agreement_fees_below_100pct'),
        migrations.RemoveField(model_name='roamingagreement', name='visitor_policy'),
        migrations.RemoveField(model_name='roamingagreement', name='issuer_fee_bps'),
        migrations.RemoveField(model_name='roamingagreement', name='network_fee_bps'),
        migrations.RemoveField(model_name='roamingagreement', name='cut_off'),
        migrations.RemoveField(model_name='roamingagreement', name='hotlist_grace_minutes'),
    ]

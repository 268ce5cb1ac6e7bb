"""What the clearing resume sweep needs on a cycle: when a step last moved it on by the clock (the steps'
own times are business times), when the sweep last sent it again and how often."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('interop', '0010_record_fillfactor_default'),
    ]

    operations = [
        migrations.AddField(
            model_name='clearingcycle',
            name='progressed_at',
            field=models.DateTimeField(blank=True, help_text='When a step last moved the cycle on (wall clock).', null=True),
        ),
        migrations.AddField(
            model_name='clearingcycle',
            name='resumed_at',
            field=models.DateTimeField(blank=True, help_text="When the resume sweep last sent the cycle's processing again.", null=True),
        ),
        migrations.AddField(
            model_name='clearingcycle',
            name='resumes',
            field=models.PositiveIntegerField(default=0, help_text='How often the resume sweep sent it again.'),
        ),
    ]

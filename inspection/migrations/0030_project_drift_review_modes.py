"""``Project.drift_review`` becomes a choice: off, on the models' signals, or on any signal.

A project that had it on keeps what it had ("any" open alert sends the station's parts to
people); the rest are "off". The column is replaced rather than cast, so that PostgreSQL and
SQLite end up with the same values.
"""

from django.db import migrations, models


def forwards(apps, schema_editor):
    Project = apps.get_model("inspection", "Project")
    Project.objects.filter(drift_review=True).update(drift_review_mode="any")


def backwards(apps, schema_editor):
    Project = apps.get_model("inspection", "Project")
    Project.objects.exclude(drift_review_mode="off").update(drift_review=True)


class Migration(migrations.Migration):
    dependencies = [
        ("inspection", "0029_station_drift_baseline"),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="drift_review_mode",
            field=models.CharField(
                choices=[("off", "Off"), ("models", "Models"), ("any", "Any")], default="off", max_length=8
            ),
        ),
        migrations.RunPython(forwards, backwards),
        migrations.RemoveField(model_name="project", name="drift_review"),
        migrations.RenameField(model_name="project", old_name="drift_review_mode", new_name="drift_review"),
    ]

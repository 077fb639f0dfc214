"""ReviewItem.sampled: whether the part came to people whatever its scores.

Existing items: audit samples and cold starts did; so did any item routed while the project's
thresholds could decide no part (t_pass < 0 and t_fail > 1, as its inspection recorded them).
"""

from django.db import migrations, models

WHATEVER_THE_SCORES = ["audit_sample", "cold_start"]
BY_SCORES = ["uncertain", "disagreement", "out_of_distribution"]


def mark_sampled(apps, schema_editor):
    ReviewItem = apps.get_model("review", "ReviewItem")
    ReviewItem.objects.filter(reason__in=WHATEVER_THE_SCORES, golden__isnull=True).update(sampled=True)
    held = []
    rows = ReviewItem.objects.filter(reason__in=BY_SCORES, golden__isnull=True, inspection__isnull=False)
    for pk, scores in rows.values_list("pk", "inspection__scores").iterator(chunk_size=2000):
        thresholds = scores.get("thresholds") if isinstance(scores, dict) else None
        if isinstance(thresholds, dict) and thresholds.get("t_pass", 0) < 0 and thresholds.get("t_fail", 0) > 1:
            held.append(pk)
    for start in range(0, len(held), 500):
        ReviewItem.objects.filter(pk__in=held[start : start + 500]).update(sampled=True)


class Migration(migrations.Migration):
    dependencies = [
        ("review", "0007_reason_drift"),
        ("inspection", "0031_calibration_drift_since"),
    ]

    operations = [
        migrations.AddField(
            model_name="reviewitem",
            name="sampled",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(mark_sampled, migrations.RunPython.noop),
    ]

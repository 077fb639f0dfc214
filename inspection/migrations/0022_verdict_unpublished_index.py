from django.db import migrations, models

from loupe.migration_operations import AddIndexOnline


class Migration(migrations.Migration):
    # Built concurrently on PostgreSQL: the verdict table keeps taking inserts meanwhile.
    atomic = False

    dependencies = [
        ("inspection", "0021_verdict_published_at"),
    ]

    operations = [
        AddIndexOnline(
            model_name="verdict",
            index=models.Index(
                condition=models.Q(("is_final", True), ("published_at__isnull", True)),
                fields=["created_at"],
                name="verdict_unpublished_final",
            ),
        ),
    ]

"""The ``Picture`` table."""

from __future__ import annotations

import uuid

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Picture",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("original", models.CharField(max_length=200)),
                ("format", models.CharField(max_length=10)),
                ("width", models.PositiveIntegerField()),
                ("height", models.PositiveIntegerField()),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("processing", "Processing"),
                            ("ready", "Ready"),
                            ("failed", "Failed"),
                            ("deleting", "Deleting"),
                        ],
                        default="queued",
                        max_length=12,
                    ),
                ),
                ("thumbnails", models.JSONField(default=list)),
                ("error", models.CharField(blank=True, max_length=300)),
            ],
            options={"ordering": ("-created_at",)},
        ),
    ]

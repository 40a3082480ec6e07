"""Unmanaged models that give the admin's worker pages their permissions; they have no table.

Django's permissions belong to a content type, and a content type to a model: each page is one
model here, never queried, whose ``default_permissions`` are the permissions its page checks.
"""

from __future__ import annotations

from django.db import models


class Page(models.Model):
    """A page of the admin's worker section: a content type and permissions, no table."""

    # Declared, so that no project's DEFAULT_AUTO_FIELD changes the models (or asks for a
    # migration).
    id: models.AutoField[int, int] = models.AutoField(primary_key=True)

    class Meta:
        abstract = True
        app_label = "channel_worker"
        managed = False
        default_permissions: tuple[str, ...] = ("view",)


class Channel(Page):
    """Queued, in-flight and completed messages of each channel (``view_channel``)."""


class Worker(Page):
    """The live workers and their health (``view_worker``)."""


class DeadLetter(Page):
    """Dead letters: ``view_deadletter`` to look, ``change_deadletter`` to requeue or purge."""

    class Meta(Page.Meta):
        default_permissions = ("view", "change")


class TaskResult(Page):
    """Task results: ``view_taskresult`` to look, ``change_taskresult`` to enqueue again."""

    class Meta(Page.Meta):
        default_permissions = ("view", "change")


class Schedule(Page):
    """Schedules: ``view_schedule`` to look, ``change_schedule`` to run one now."""

    class Meta(Page.Meta):
        default_permissions = ("view", "change")

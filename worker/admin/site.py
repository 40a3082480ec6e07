"""Registration of the worker's pages with an admin site (``django.contrib.admin``'s own by
default, done when the ``worker`` app is ready)."""

from __future__ import annotations

from django.contrib import admin

from worker.admin.dead_letter_pages import DeadLetterAdmin
from worker.admin.models import Channel, DeadLetter, Schedule, TaskResult, Worker
from worker.admin.pages import ChannelAdmin, WorkerAdmin
from worker.admin.result_pages import TaskResultAdmin
from worker.admin.schedule_pages import ScheduleAdmin

PAGES = {
    Channel: ChannelAdmin,
    Worker: WorkerAdmin,
    DeadLetter: DeadLetterAdmin,
    TaskResult: TaskResultAdmin,
    Schedule: ScheduleAdmin,
}


def register(site: admin.AdminSite | None = None) -> None:
    """Add the Channels, Workers, Dead letters, Task results and Schedules pages to ``site``,
    once."""
    site = site or admin.site
    for model, page in PAGES.items():
        if not site.is_registered(model):
            site.register(model, page)

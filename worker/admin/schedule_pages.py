"""The Schedules page: what ``channel-worker schedules`` shows, one row per schedule, and "run
now" (as ``channel-worker schedules run NAME``) behind a confirmation, once per confirmation."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django.views.decorators.http import require_POST

from worker.admin import readers
from worker.admin.pages import PageAdmin
from worker.admin.result_pages import channel_layer_backends
from worker.errors import SendError
from worker.schedules.definitions import Schedule
from worker.schedules.setup import project_schedules
from worker.schedules.status import ScheduleStatus, on_layer
from worker.tasks.results import load_task

#: Where the page sends a project with no schedules.
SCHEDULES_DOCS_URL = "https://github.com/channel-worker/channel-worker/blob/main/docs/schedules.md"
#: A confirmation's token: ``secrets.token_urlsafe(16)``, so a posted one names a bounded key.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")
#: The outcome of a task whose result is gone.
EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A schedule's definition beside its status, and its last task result's page."""

    schedule: Schedule
    status: ScheduleStatus
    result_url: str | None

    @property
    def message_type(self) -> str:
        return str((self.schedule.message or {}).get("type", "-"))


class ScheduleAdmin(PageAdmin):
    """``CHANNEL_WORKER["SCHEDULES"]``; ``change_schedule`` lets a user run one now."""

    def get_urls(self) -> list[URLPattern]:
        return [
            self.page_url("", self.schedules_view, "changelist"),
            self.page_url("<str:name>/run/", require_POST(self.run_view), "run"),
        ]

    def _schedules(self) -> list[Schedule]:
        """The project's schedules on the page's layer, checked as ``runworker`` checks them."""
        found = project_schedules(getattr(settings, "CHANNEL_WORKER", None))
        return on_layer(found.values(), self.layer_alias)

    def schedules_view(self, request: HttpRequest) -> HttpResponse:
        self.require_view(request)
        schedules, layer = self._schedules(), self.layer()
        statuses = readers.run(lambda: readers.schedule_rows(layer, schedules)) if schedules else []
        rows = [
            ScheduleRow(schedule, status, _result_url(schedule, status))
            for schedule, status in zip(schedules, statuses, strict=True)
        ]
        return self.render(
            request, "schedules.html", "Schedules", rows=rows, docs_url=SCHEDULES_DOCS_URL
        )

    def run_view(self, request: HttpRequest, name: str) -> HttpResponse:
        self.require_change(request)
        schedule = next((found for found in self._schedules() if found.name == name), None)
        if schedule is None:
            raise Http404(f"No schedule {name!r} on layer {self.layer_alias!r}")
        token = request.POST.get("token", "")
        if request.POST.get("confirm") != "yes" or not _TOKEN.fullmatch(token):
            return self._confirm(request, schedule)
        layer, by = self.layer(), f"admin user {request.user.get_username()}"
        try:
            done, first = readers.run(lambda: readers.run_schedule(layer, schedule, token, by))
        except SendError as error:
            messages.error(request, f"Schedule {name!r} not run: {error}")
            return self._back()
        if first:
            self.record_action(
                request, name, f"schedule {name}", f"Ran schedule {name} now: {done}."
            )
            messages.success(request, f"Ran schedule {name!r} now: {done}.")
        else:
            messages.info(
                request, f"Schedule {name!r} was already run by this confirmation: {done}."
            )
        return self._back()

    def _confirm(self, request: HttpRequest, schedule: Schedule) -> HttpResponse:
        return self.render(
            request,
            "confirm_schedule_run.html",
            "Are you sure?",
            self.crumbs((schedule.name, None), ("Run now", None)),
            schedule=schedule,
            target=schedule.task or schedule.channel,
            token=secrets.token_urlsafe(16),
            action_url=reverse(f"admin:{self.url_name('run')}", args=[schedule.name]),
        )

    def _back(self) -> HttpResponse:
        return HttpResponseRedirect(reverse(f"admin:{self.url_name('changelist')}"))


def _result_url(schedule: Schedule, status: ScheduleStatus) -> str | None:
    """The Task results page of the last run's result, while its backend keeps it there."""
    if schedule.task is None or not status.result_id or status.outcome == EXPIRED:
        return None
    alias = load_task(schedule.task).backend
    if alias not in channel_layer_backends():
        return None
    return reverse("admin:channel_worker_taskresult_result", args=[alias, status.result_id])

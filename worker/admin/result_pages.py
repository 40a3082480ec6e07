"""The Task results pages of ``ChannelLayerBackend``: recent results by status and queue, one
result with its errors and last progress, and "enqueue again" for a failed one."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django.views.decorators.http import require_POST

from worker.admin.pages import PageAdmin
from worker.errors import ConfigurationError
from worker.tasks.progress import REPORTED_AT_KEY, Progress
from worker.tasks.results import RETRYING, from_record, shown_status
from worker.tasks.unrunnable import UnrunnableTask

if TYPE_CHECKING:
    from worker.tasks.backend import ChannelLayerBackend

#: Results listed on the page (of the most recent ones each host keeps).
LIMIT = 100
STATUSES = ("READY", RETRYING, "RUNNING", "SUCCESSFUL", "FAILED")
MAX_SHOWN_CHARS = 10_000


def channel_layer_backends() -> dict[str, ChannelLayerBackend]:
    """The ``TASKS`` backends that keep their results in Redis, by alias."""
    from django.conf import settings

    from worker.tasks.backend import ChannelLayerBackend
    from worker.tasks.compat import task_backends

    found = {}
    for alias in getattr(settings, "TASKS", {}) or {}:
        try:
            backend = task_backends[alias]
        except Exception as error:
            raise ConfigurationError(
                f"TASKS[{alias!r}] cannot be loaded ({type(error).__name__}: {error}); "
                "`manage.py check` says more"
            ) from error
        if isinstance(backend, ChannelLayerBackend):
            found[alias] = backend
    return found


class TaskResultAdmin(PageAdmin):
    """Results of ``django.tasks``; ``change_taskresult`` lets a user enqueue a failed one again."""

    def get_urls(self) -> list[URLPattern]:
        return [
            self.page_url("", self.results_view, "changelist"),
            self.page_url("<str:alias>/<str:result_id>/", self.result_view, "result"),
            self.page_url(
                "<str:alias>/<str:result_id>/enqueue/", require_POST(self.enqueue_view), "enqueue"
            ),
        ]

    def _backend(self, alias: str) -> ChannelLayerBackend:
        backends = channel_layer_backends()
        if alias not in backends:
            raise Http404(f"No ChannelLayerBackend {alias!r} in TASKS")
        return backends[alias]

    def results_view(self, request: HttpRequest) -> HttpResponse:
        self.require_view(request)
        backends = channel_layer_backends()
        alias = request.GET.get("backend") or next(iter(backends), "")
        status = request.GET.get("status") if request.GET.get("status") in STATUSES else None
        queue = request.GET.get("queue") or None
        records: list[dict[str, Any]] = []
        if alias in backends:
            store = backends[alias].store
            records = async_to_sync(store.arecent)(LIMIT, status, queue)
        rows = [record | {"shown_status": shown_status(record)} for record in records]
        return self.render(
            request,
            "task_results.html",
            "Task results",
            backends=sorted(backends),
            alias=alias,
            status=status or "",
            queue=queue or "",
            statuses=STATUSES,
            rows=rows,
            limit=LIMIT,
        )

    def _record(self, backend: ChannelLayerBackend, result_id: str) -> dict[str, Any]:
        record = backend.store.load_sync(result_id)
        if record is None:
            raise Http404(f"No result {result_id!r} on backend {backend.alias!r}")
        return record

    def result_view(self, request: HttpRequest, alias: str, result_id: str) -> HttpResponse:
        self.require_view(request)
        backend = self._backend(alias)
        record = self._record(backend, result_id)
        progress = Progress.last(result_id, backend.layer_alias)
        fields = [(key, _shown(record.get(key))) for key in ("args", "kwargs", "return_value")]
        return self.render(
            request,
            "task_result.html",
            f"Task result {result_id}",
            self.crumbs((result_id, None)),
            alias=alias,
            record=record,
            shown_status=shown_status(record),
            values=fields,
            errors=record.get("errors") or [],
            progress=progress,
            progress_at=(progress or {}).get(REPORTED_AT_KEY),
            can_enqueue=record.get("status") == "FAILED",
        )

    def enqueue_view(self, request: HttpRequest, alias: str, result_id: str) -> HttpResponse:
        self.require_change(request)
        backend = self._backend(alias)
        record = self._record(backend, result_id)
        back = HttpResponseRedirect(
            reverse(f"admin:{self.url_name('result')}", args=[alias, result_id])
        )
        if record.get("status") != "FAILED":
            messages.warning(request, "Only a failed task can be enqueued again.")
            return back
        task = from_record(record).task
        if isinstance(task, UnrunnableTask):
            messages.error(request, f"Task {record.get('task')!r} cannot be loaded on this host.")
            return back
        if request.POST.get("confirm") != "yes":
            result_url = reverse(f"admin:{self.url_name('result')}", args=[alias, result_id])
            return self.render(
                request,
                "confirm_enqueue.html",
                "Are you sure?",
                self.crumbs((result_id, result_url), ("Enqueue again", None)),
                alias=alias,
                record=record,
            )

        def enqueue() -> str:
            return str(task.using(backend=alias).enqueue(*record["args"], **record["kwargs"]).id)

        new_id, first = backend.store.rerun_sync(result_id, enqueue)
        if first:
            self.record_action(
                request,
                result_id,
                f"task result {result_id}",
                f"Enqueued task {record.get('task')} again as {new_id}.",
            )
            messages.success(request, f"Enqueued again as {new_id}.")
        else:
            messages.info(request, f"Already enqueued again as {new_id or '(in progress)'}.")
        if not new_id:
            return back
        return HttpResponseRedirect(
            reverse(f"admin:{self.url_name('result')}", args=[alias, new_id])
        )


def _shown(value: object) -> str:
    shown = json.dumps(value, ensure_ascii=False, indent=2, default=str)
    if len(shown) <= MAX_SHOWN_CHARS:
        return shown
    return f"{shown[:MAX_SHOWN_CHARS]}… (first {MAX_SHOWN_CHARS} of {len(shown)} characters)"

"""The pages' common ground, and the Channels and Workers pages.

Each page is a ``ModelAdmin`` of an unmanaged model (``models.py``) whose URLs are replaced by
the page's own views: the admin's login, look and permissions, no queryset.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import django
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from worker.admin import readers
from worker.errors import ConfigurationError, redis_fault
from worker.ops.health import RATE_BUCKET_S
from worker.transport.layer import describe_hosts, host_descriptions

if TYPE_CHECKING:
    from channels_redis.core import RedisChannelLayer

    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin

#: The path the live consumer is mounted at in the project's websocket router (``live.py``).
LIVE_PATH = "channel-worker/admin/live/"

View = Callable[..., HttpResponse]


class PageAdmin(_ModelAdmin):
    """A read-mostly page: nothing to add or delete, a change permission only where it acts."""

    #: The ``CHANNEL_LAYERS`` alias whose Redis the pages read.
    layer_alias = "default"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def layer(self) -> RedisChannelLayer:
        from worker.project import load_layer

        return load_layer(self.layer_alias)

    def url_name(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    def page_url(self, route: str, view: View, name: str) -> URLPattern:
        """``route`` served by ``view`` for staff only (the admin's login otherwise)."""
        guarded = self._unavailable_says_why(view)
        return path(route, self.admin_site.admin_view(guarded), name=self.url_name(name))

    def _unavailable_says_why(self, view: View) -> View:
        """``view``, answering 503 with one line when the layer or its Redis cannot serve it."""

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except ConfigurationError as error:
                problem = str(error)
            except Exception as error:
                fault = redis_fault(error)
                if fault is None:
                    raise
                problem = (
                    f"Redis at {describe_hosts(self.layer())} cannot answer ({fault.reason}); "
                    "the pages show again once it does."
                )
            response = self.render(request, "unavailable.html", "Unavailable", problem=problem)
            response.status_code = 503
            return response

        return guarded

    def require_view(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def require_change(self, request: HttpRequest) -> None:
        if not self.has_change_permission(request):
            raise PermissionDenied

    def record_action(
        self, request: HttpRequest, object_id: str, object_repr: str, message: str
    ) -> None:
        """An entry in the admin's log ("Recent actions"), naming the user and what was done."""
        # Imported here: their models load only once the admin and contenttypes are installed.
        from django.contrib.admin.models import CHANGE, LogEntry
        from django.contrib.contenttypes.models import ContentType

        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type=ContentType.objects.get_for_model(self.model, for_concrete_model=False),
            object_id=object_id,
            object_repr=object_repr[:200],
            action_flag=CHANGE,
            change_message=message,
        )

    def crumbs(self, *trail: tuple[str, str | None]) -> list[tuple[str, str | None]]:
        """The breadcrumbs after the app's: this page's list, then ``trail`` (label, link)."""
        plural = str(self.opts.verbose_name_plural).capitalize()
        if not trail:
            return [(plural, None)]
        return [(plural, reverse(f"admin:{self.url_name('changelist')}")), *trail]

    def render(
        self,
        request: HttpRequest,
        template: str,
        title: str,
        crumbs: list[tuple[str, str | None]] | None = None,
        **context: Any,
    ) -> TemplateResponse:
        page = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "crumbs": crumbs or self.crumbs(),
            # Django 6's admin lists breadcrumbs in an <ol>; 5.2's in a <div>.
            "breadcrumbs_as_list": django.VERSION >= (6, 0),
            "has_change_permission": self.has_change_permission(request),
            "changelist_url": f"admin:{self.url_name('changelist')}",
            **context,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, f"channel_worker/admin/{template}", page)


class ViewOnlyPage(PageAdmin):
    """A page with one view and no action: its view permission is all it checks."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        return [self.page_url("", self.page_view, "changelist")]

    def page_view(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError


class ChannelAdmin(ViewOnlyPage):
    """Per channel what ``channel-worker status`` shows, with a throughput sparkline."""

    def page_view(self, request: HttpRequest) -> HttpResponse:
        self.require_view(request)
        layer = self.layer()
        rows = readers.run(lambda: readers.channel_rows(layer))
        return self.render(
            request,
            "channels.html",
            "Channels",
            rows=rows,
            hosts=host_descriptions(layer),
            bucket_s=RATE_BUCKET_S,
            window_min=readers.SPARKLINE_WINDOW_S // 60,
            live_path=LIVE_PATH,
        )


class WorkerAdmin(ViewOnlyPage):
    """Each live worker: where it runs, what it serves, when it last reported, its health."""

    def page_view(self, request: HttpRequest) -> HttpResponse:
        self.require_view(request)
        layer = self.layer()
        rows = readers.run(lambda: readers.worker_rows(layer))
        return self.render(request, "workers.html", "Workers", rows=rows, live_path=LIVE_PATH)

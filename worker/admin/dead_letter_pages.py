"""The Dead letters pages: channels with their counts, a channel's letters, one letter, and the
requeue and purge actions, each behind a confirmation page and written to the admin's log."""

from __future__ import annotations

import datetime
import pprint
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django.views.decorators.http import require_POST

from worker.admin import readers
from worker.admin.pages import PageAdmin

#: Dead letters on one page of a channel's list.
PER_PAGE = 100
#: A message is shown up to this many characters; the page says its full size.
MAX_SHOWN_CHARS = 10_000
#: Letters one requeue of a selection may name.
MAX_SELECTED = PER_PAGE
#: Letters one "requeue all" puts back, so that one request takes seconds, not minutes.
MAX_REQUEUED_AT_ONCE = 10_000


class DeadLetterAdmin(PageAdmin):
    """Dead letters per channel; ``change_deadletter`` lets a user requeue and purge them."""

    def get_urls(self) -> list[URLPattern]:
        return [
            self.page_url("", self.channels_view, "changelist"),
            self.page_url("<str:channel>/", self.letters_view, "channel"),
            self.page_url("<str:channel>/letter/<str:letter_id>/", self.letter_view, "letter"),
            self.page_url("<str:channel>/requeue/", require_POST(self.requeue_view), "requeue"),
            self.page_url("<str:channel>/purge/", require_POST(self.purge_view), "purge"),
        ]

    def _channel(self, channel: str) -> str:
        if not readers.valid_channel(self.layer(), channel):
            raise Http404(f"{channel!r} is not a channel name")
        return channel

    def channels_view(self, request: HttpRequest) -> HttpResponse:
        self.require_view(request)
        layer = self.layer()
        counts = readers.run(lambda: readers.dead_letter_counts(layer))
        return self.render(request, "dead_letter_channels.html", "Dead letters", counts=counts)

    def letters_view(self, request: HttpRequest, channel: str) -> HttpResponse:
        self.require_view(request)
        channel, layer = self._channel(channel), self.layer()
        asked = _page_number(request.GET.get("p"))
        letters, total = readers.run(
            lambda: readers.dead_letter_page(layer, channel, (asked - 1) * PER_PAGE, PER_PAGE)
        )
        pages = max(1, -(-total // PER_PAGE))
        page = min(asked, pages)
        return self.render(
            request,
            "dead_letters.html",
            f"Dead letters of {channel}",
            self.crumbs((channel, None)),
            channel=channel,
            letters=[(letter, _time(letter.dead_at)) for letter in letters],
            total=total,
            page=page,
            pages=pages,
            previous_page=page - 1 if page > 1 else None,
            next_page=page + 1 if page < pages else None,
        )

    def letter_view(self, request: HttpRequest, channel: str, letter_id: str) -> HttpResponse:
        self.require_view(request)
        channel, layer = self._channel(channel), self.layer()
        letter = readers.run(lambda: readers.dead_letter(layer, channel, letter_id))
        if letter is None:
            raise Http404(f"No dead letter {letter_id!r} on channel {channel!r}")
        return self.render(
            request,
            "dead_letter.html",
            f"Dead letter {letter_id}",
            self.crumbs((channel, self._channel_url(channel)), (letter_id, None)),
            channel=channel,
            letter=letter,
            times={
                name: _time(getattr(letter, name))
                for name in ("first_attempt_at", "last_attempt_at", "dead_at")
            },
            message=_shown_message(letter.message),
        )

    def requeue_view(self, request: HttpRequest, channel: str) -> HttpResponse:
        self.require_change(request)
        channel = self._channel(channel)
        every = "all" in request.POST
        selected = [] if every else request.POST.getlist("_selected")[:MAX_SELECTED]
        if not every and not selected:
            messages.warning(request, "Select dead letters to requeue, or requeue all.")
            return self._back(channel)
        if request.POST.get("confirm") != "yes":
            return self._confirm(request, channel, "requeue", selected, every)
        if every:
            self._requeue_all(request, channel)
        else:
            self._requeue_selected(request, channel, selected)
        return self._back(channel)

    def _requeue_selected(self, request: HttpRequest, channel: str, selected: list[str]) -> None:
        layer = self.layer()
        count = readers.run(lambda: readers.requeue(layer, channel, selected))
        what = f"{len(selected)} selected dead letter(s)"
        self._record(request, channel, f"Requeued {count} of {what} of channel {channel}.")
        skipped = "" if count == len(selected) else " (the rest were already gone)"
        messages.success(request, f"Requeued {count} dead letter(s) on {channel}{skipped}.")

    def _requeue_all(self, request: HttpRequest, channel: str) -> None:
        layer, most = self.layer(), MAX_REQUEUED_AT_ONCE
        count, left = readers.run(lambda: readers.requeue_all(layer, channel, most))
        self._record(request, channel, f"Requeued {count} dead letter(s) of channel {channel}.")
        still = f"; {left} still there (requeue all again for the next {most})" if left else ""
        messages.success(request, f"Requeued {count} dead letter(s) on {channel}{still}.")

    def purge_view(self, request: HttpRequest, channel: str) -> HttpResponse:
        self.require_change(request)
        channel, layer = self._channel(channel), self.layer()
        if request.POST.get("confirm") != "yes":
            return self._confirm(request, channel, "purge", [], True)
        count = readers.run(lambda: readers.purge(layer, channel))
        self._record(request, channel, f"Purged {count} dead letter(s) of channel {channel}.")
        messages.success(request, f"Purged {count} dead letter(s) of {channel}.")
        return self._back(channel)

    def _confirm(
        self, request: HttpRequest, channel: str, action: str, selected: list[str], every: bool
    ) -> HttpResponse:
        layer = self.layer()
        total = readers.run(lambda: readers.dead_letter_count(layer, channel))
        return self.render(
            request,
            "confirm.html",
            "Are you sure?",
            self.crumbs((channel, self._channel_url(channel)), (action.capitalize(), None)),
            channel=channel,
            action=action,
            selected=selected,
            every=every,
            total=total,
            most=MAX_REQUEUED_AT_ONCE,
            action_url=reverse(f"admin:{self.url_name(action)}", args=[channel]),
        )

    def _record(self, request: HttpRequest, channel: str, message: str) -> None:
        self.record_action(request, channel, f"dead letters of {channel}", message)

    def _channel_url(self, channel: str) -> str:
        return reverse(f"admin:{self.url_name('channel')}", args=[channel])

    def _back(self, channel: str) -> HttpResponse:
        return HttpResponseRedirect(self._channel_url(channel))


def _time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _page_number(text: str | None) -> int:
    try:
        return max(1, int(text or 1))
    except ValueError:
        return 1


def _shown_message(message: Any) -> str:
    """The message as Python would print it, cut to ``MAX_SHOWN_CHARS``; escaped by the
    template."""
    shown = pprint.pformat(message, width=100)
    if len(shown) <= MAX_SHOWN_CHARS:
        return shown
    return f"{shown[:MAX_SHOWN_CHARS]}… (first {MAX_SHOWN_CHARS} of {len(shown)} characters)"

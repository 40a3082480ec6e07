"""The gallery page, uploads, deletions and "clear all" (a task).

Each POST answers JSON to the page's script (``Accept: application/json``) and falls back to
a redirect, or the page with its error, for a plain form post.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from example.thumbnails.gallery import queue_upload, request_deletion
from example.thumbnails.models import Picture
from example.thumbnails.tasks import clear_gallery
from example.thumbnails.uploads import UploadRejected, check_size, inspect_image, megabytes

logger = logging.getLogger(__name__)

# Room for the multipart envelope and the CSRF field around the file itself.
FORM_OVERHEAD_BYTES = 64 * 1024


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


# What a picture's status says on the page without JavaScript (gallery.js says the same).
STATUS_TEXT = {
    Picture.Status.QUEUED: "Queued for the worker…",
    Picture.Status.PROCESSING: "Making thumbnails: {done}/{total}",
    Picture.Status.READY: "Ready: {total} sizes",
    Picture.Status.FAILED: "Failed: {error}",
    Picture.Status.DELETING: "Deleting…",
}
# A plain form post (no JavaScript, so no confirm()) asks on a page of its own first.
CONFIRMED_FIELD = "confirmed"


def _status_text(state: dict[str, Any]) -> str:
    return STATUS_TEXT[Picture.Status(state["status"])].format(**state)


def _page(request: HttpRequest, error: str = "", status: int = 200) -> HttpResponse:
    pictures = [picture.as_state() for picture in Picture.objects.all()]
    context: dict[str, Any] = {
        "pictures": pictures,
        # The gallery as the page shows it without JavaScript: reload to see progress.
        "cards": [{**state, "status_text": _status_text(state)} for state in pictures],
        "max_bytes": settings.THUMBNAILS_MAX_UPLOAD_BYTES,
        "max_size": megabytes(settings.THUMBNAILS_MAX_UPLOAD_BYTES),
        "sizes": settings.THUMBNAILS_SIZES,
        "error": error,
    }
    return render(request, "thumbnails/index.html", context, status=status)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    max_bytes: int = settings.THUMBNAILS_MAX_UPLOAD_BYTES
    try:
        # Refused on the declared length first, before the file is parsed.
        length = _declared_length(request)
        if length > max_bytes + FORM_OVERHEAD_BYTES:
            check_size(length, max_bytes)
        image = request.FILES.get("image")
        if image is None:
            raise UploadRejected("No file was sent: choose an image to upload.")
        check_size(image.size, max_bytes)
        info = inspect_image(image, settings.THUMBNAILS_MAX_PIXELS)
    except UploadRejected as rejection:
        logger.info("Upload rejected: %s", rejection)
        if _wants_json(request):
            return JsonResponse({"error": str(rejection)}, status=rejection.status)
        return _page(request, str(rejection), rejection.status)
    picture = queue_upload(image, info)
    logger.info(
        "Picture %s stored (%s %dx%d); thumbnails queued",
        picture.id,
        info.format,
        info.width,
        info.height,
    )
    if _wants_json(request):
        return JsonResponse({"picture": picture.as_state()}, status=201)
    return redirect("thumbnails:index")


def _needs_confirmation(request: HttpRequest) -> bool:
    """A plain form post not yet confirmed; the page's script confirms before it posts JSON."""
    return not _wants_json(request) and request.POST.get(CONFIRMED_FIELD) != "yes"


def _confirm(request: HttpRequest, question: str, button: str) -> HttpResponse:
    context = {"question": question, "button": button, "action": request.path}
    return render(request, "thumbnails/confirm.html", context)


@require_POST
def delete(request: HttpRequest, picture_id: uuid.UUID) -> HttpResponse:
    if _needs_confirmation(request) and Picture.objects.filter(pk=picture_id).exists():
        return _confirm(request, "Delete this picture and its thumbnails?", "Delete")
    picture = request_deletion(picture_id)
    if picture is None:
        message = "That picture no longer exists."
        if _wants_json(request):
            return JsonResponse({"error": message}, status=404)
        return _page(request, message, 404)
    if _wants_json(request):
        return JsonResponse({"picture": picture.as_state()}, status=202)
    return redirect("thumbnails:index")


@require_POST
def clear(request: HttpRequest) -> HttpResponse:
    if _needs_confirmation(request):
        return _confirm(request, "Delete every picture and its thumbnails?", "Delete all")
    result = clear_gallery.enqueue()
    logger.info("Task clear_gallery enqueued as %s", result.id)
    if _wants_json(request):
        return JsonResponse({"task": result.id}, status=202)
    return redirect("thumbnails:index")

"""The worker channels of the thumbnails app and the messages sent on them."""

from __future__ import annotations

import uuid
from typing import Any

GENERATE_CHANNEL = "thumbnails-generate"
DELETE_CHANNEL = "thumbnails-delete"


def generate_message(picture_id: uuid.UUID | str) -> dict[str, Any]:
    return {"type": "thumbnails.generate", "id": str(picture_id)}


def delete_message(picture_id: uuid.UUID | str) -> dict[str, Any]:
    return {"type": "thumbnails.delete", "id": str(picture_id)}

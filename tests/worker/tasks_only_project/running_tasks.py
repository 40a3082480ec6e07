"""Tasks that run until the test releases them, so it can see them while they run."""

from __future__ import annotations

import os

import redis
import redis.asyncio

# django.tasks on Django 6, the django-tasks backport on Django 5.2.
from worker.tasks.compat import task


@task()
def hold(release_key: str, timeout_s: float) -> bool:
    """Run until ``release_key`` gets an entry; whether it did within ``timeout_s``."""
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as client:
        return client.blpop([release_key], timeout=timeout_s) is not None


@task()
async def ahold(release_key: str, timeout_s: float) -> bool:
    """``hold`` as an async function."""
    client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    try:
        return await client.blpop([release_key], timeout=timeout_s) is not None
    finally:
        await client.aclose()

"""Settings of the example project; the environment picks Redis, data directory and hosts.

``REDIS_URL`` is the channel layer's Redis (the demo launcher starts one when it is unset),
``EXAMPLE_DATA_DIR`` holds the SQLite database and the uploaded media (default: ``example/``),
``DJANGO_ALLOWED_HOSTS`` lists the host names the page is served under (comma-separated).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import django

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("EXAMPLE_DATA_DIR", str(BASE_DIR)))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# "worker" above "channels", so `manage.py runworker` is channel-worker's.
INSTALLED_APPS = [
    "worker",
    "channels",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "example.thumbnails",
]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # the Tasks API backport for Django 5.2

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "example.urls"
ASGI_APPLICATION = "example.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                # The admin's, where the worker's pages are (/admin/).
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES: dict[str, Any] = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "db.sqlite3",
        # The web server and the worker processes write to the same file.
        "OPTIONS": {"timeout": 20},
    }
}

STATIC_URL = "static/"
MEDIA_URL = "/media/"
MEDIA_ROOT = DATA_DIR / "media"

# Uploads: the size limit is checked before Pillow reads the file; sizes are the longest side
# of each thumbnail, in pixels.
THUMBNAILS_MAX_UPLOAD_BYTES = 5 * 1024 * 1024
THUMBNAILS_MAX_PIXELS = 25_000_000
THUMBNAILS_SIZES = (64, 160, 320, 640)
# A pause after each size, so the progress bar can be watched in the demo; 0 in production.
THUMBNAILS_STEP_DELAY_S = float(os.environ.get("THUMBNAILS_STEP_DELAY_S", "0.3"))
THUMBNAILS_GROUP = "thumbnails"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [REDIS_URL],
            # Task messages may wait in Redis while workers are down: keep them for an hour and
            # let a backlog grow past the default capacity of 100.
            "expiry": 3600,
            "channel_capacity": {"thumbnails-*": 10_000, "tasks.*": 10_000},
        },
    }
}

TASKS = {
    "default": {
        "BACKEND": "worker.tasks.ChannelLayerBackend",
        "QUEUES": ["default"],
    }
}

CHANNEL_WORKER = {
    "CHANNELS": {
        # Pillow work runs in threads; four images at a time per worker process.
        "thumbnails-generate": {"concurrency": 4, "max_attempts": 3},
        "thumbnails-delete": {"concurrency": 4, "max_attempts": 5},
        "tasks.default": {"concurrency": 2, "max_attempts": 3},
    },
    # Fired by a `runworker tasks.default`, once per night however many workers run.
    "SCHEDULES": {
        "clean-orphaned-thumbnails": {
            "task": "example.thumbnails.tasks.clean_orphaned_thumbnails",
            "cron": "0 3 * * *",
            "timezone": "Europe/Paris",
        },
    },
}

# The example's own log lines, in the worker's format, from the web server and the worker alike.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line"}},
    "loggers": {"example": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}

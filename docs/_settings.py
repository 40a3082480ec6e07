"""Django settings for building the docs: enough for autodoc to import the public API."""

import django

SECRET_KEY = "docs-only-not-secret"
INSTALLED_APPS = [
    "worker",
    "channels",
    "django.contrib.auth",
    "django.contrib.contenttypes",
]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # the Tasks API backport for Django 5.2
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]},
    }
}
TASKS = {"default": {"BACKEND": "worker.tasks.ChannelLayerBackend"}}

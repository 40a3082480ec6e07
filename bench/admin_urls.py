"""The URLconf of ``bench_admin.py``: Django's admin, with the worker's pages."""

from __future__ import annotations

from django.contrib import admin
from django.urls import URLResolver, path

urlpatterns: list[URLResolver] = [path("admin/", admin.site.urls)]

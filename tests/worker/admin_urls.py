"""The URLconf of the admin tests: Django's admin, with the worker's pages registered."""

from __future__ import annotations

from django.contrib import admin
from django.urls import URLResolver, path

urlpatterns: list[URLResolver] = [path("admin/", admin.site.urls)]

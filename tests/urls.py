"""No http views: the routers under test are ASGI, not Django URLconfs."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []

"""URLs of the thumbnails app."""

from __future__ import annotations

from django.urls import path

from example.thumbnails import views

app_name = "thumbnails"
urlpatterns = [
    path("", views.index, name="index"),
    path("pictures/", views.upload, name="upload"),
    path("pictures/<uuid:picture_id>/delete/", views.delete, name="delete"),
    path("pictures/clear/", views.clear, name="clear"),
]

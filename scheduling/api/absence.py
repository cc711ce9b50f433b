"""Placeholder filled by the absence API."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []

"""Placeholder filled by the availability API."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []

"""Placeholder filled by the schedules API."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []

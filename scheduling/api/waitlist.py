"""Placeholder filled by the waitlist API."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []

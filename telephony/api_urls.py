"""/api/v1/telephony/: included from clinic/urls.py."""

from django.urls import URLPattern, path

from . import api

app_name = "telephony_api"

urlpatterns: list[URLPattern] = [
    path("webhook/", api.WebhookView.as_view(), name="webhook"),
]

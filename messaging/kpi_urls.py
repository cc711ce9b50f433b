"""The managers' KPI dashboard (included under /messaging/kpi/)."""

from django.urls import path

from . import kpi_views

app_name = "messaging_kpi"

urlpatterns = [
    path("", kpi_views.kpi_page, name="dashboard"),
]

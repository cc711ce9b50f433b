"""The desk's call pages, under /desk/calls/."""

from django.urls import path

from . import views

app_name = "telephony"

urlpatterns = [
    path("", views.call_log, name="log"),
    path("<uuid:public_id>/classify/", views.call_classify, name="classify"),
    path("popup/<uuid:public_id>/", views.popup, name="popup"),
    path("planned/", views.planned_calls, name="planned"),
    path("planned/<uuid:public_id>/done/", views.planned_call_complete, name="planned_done"),
    path("planned/<uuid:public_id>/cancel/", views.planned_call_cancel, name="planned_cancel"),
]

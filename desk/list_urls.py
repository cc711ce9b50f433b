"""URLs of the desk's lists; ``desk.urls`` includes them in the "desk" namespace."""

from django.urls import URLPattern, path

from . import list_views

urlpatterns: list[URLPattern] = [
    path("appointments/", list_views.appointment_list_page, name="appointment_list"),
    path(
        "appointments/export.xlsx",
        list_views.appointment_list_export,
        name="appointment_export",
    ),
    path("calls/tomorrow/", list_views.call_list_page, name="call_list"),
    path(
        "calls/tomorrow/<uuid:public_id>/",
        list_views.call_result_record,
        name="call_result",
    ),
]

"""URLs of the desk's printouts; ``desk.urls`` includes them in the "desk" namespace."""

from django.urls import URLPattern, path

from . import print_views

urlpatterns: list[URLPattern] = [
    path(
        "appointments/<uuid:public_id>/slip.pdf",
        print_views.appointment_slip,
        name="appointment_slip",
    ),
    path(
        "doctors/<uuid:public_id>/day/<str:day>.pdf",
        print_views.doctor_day_list,
        name="doctor_day_list",
    ),
]

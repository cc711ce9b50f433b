"""/api/v1/scheduling/: every part of the scheduling API, one module per area."""

from django.urls import URLPattern, URLResolver, include, path

from . import absence, appointments, availability, schedules, waitlist

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include(appointments.urlpatterns)),
    path("", include(availability.urlpatterns)),
    path("", include(schedules.urlpatterns)),
    path("", include(waitlist.urlpatterns)),
    path("", include(absence.urlpatterns)),
]

"""Live updates of the schedule grid; included in the ``desk`` namespace by ``desk/urls.py``."""

from django.urls import path

from . import live

urlpatterns = [
    path("schedule/events/", live.schedule_events, name="schedule_events"),
    path("schedule/version/", live.schedule_version, name="schedule_version"),
]

"""The public FHIR R4 API and its SMART Scheduling Links files, mounted at ``fhir/``."""

from django.urls import path

from . import smart, views

app_name = "website-fhir"

urlpatterns = [
    path("Practitioner", views.PractitionerView.as_view(), name="practitioner-list"),
    path("Practitioner/<str:resource_id>", views.PractitionerView.as_view(), name="practitioner"),
    path("Location", views.LocationView.as_view(), name="location-list"),
    path("Location/<str:resource_id>", views.LocationView.as_view(), name="location"),
    path("HealthcareService", views.HealthcareServiceView.as_view(), name="service-list"),
    path(
        "HealthcareService/<str:resource_id>",
        views.HealthcareServiceView.as_view(),
        name="service",
    ),
    path("Schedule", views.ScheduleView.as_view(), name="schedule-list"),
    path("Schedule/<str:resource_id>", views.ScheduleView.as_view(), name="schedule"),
    path("Slot", views.SlotView.as_view(), name="slot-list"),
    path("Appointment", views.AppointmentView.as_view(), name="appointment-list"),
    path("$bulk-publish", smart.BulkPublishView.as_view(), name="bulk-publish"),
    path(
        "$bulk-publish/<str:resource_type>.ndjson",
        smart.BulkFileView.as_view(),
        name="bulk-file",
    ),
]

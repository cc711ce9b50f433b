"""The receptionist's and call centre's pages, under /desk/."""

from django.urls import path

from . import booking_views, free_time, list_urls, live_urls, panels, print_urls, views

app_name = "desk"

urlpatterns = [
    path("schedule/", views.grid_page, name="grid"),
    path("schedule/grid/", views.grid_fragment, name="grid_fragment"),
    path("schedule/slot/", booking_views.slot_form, name="slot_form"),
    path("schedule/slot/book/", booking_views.slot_book, name="slot_book"),
    path("schedule/slot/release/", booking_views.slot_release, name="slot_release"),
    path("schedule/patients/", booking_views.patient_picker, name="patient_picker"),
    path(
        "schedule/appointments/<uuid:public_id>/",
        booking_views.appointment_dialog,
        name="appointment",
    ),
    path(
        "schedule/appointments/<uuid:public_id>/status/",
        booking_views.appointment_status,
        name="appointment_status",
    ),
    path(
        "schedule/appointments/<uuid:public_id>/details/",
        booking_views.appointment_details,
        name="appointment_details",
    ),
    path(
        "schedule/appointments/<uuid:public_id>/cancel/",
        booking_views.appointment_cancel_view,
        name="appointment_cancel",
    ),
    path(
        "schedule/appointments/<uuid:public_id>/move/",
        booking_views.appointment_move_view,
        name="appointment_move",
    ),
    path(
        "schedule/appointments/<uuid:public_id>/copy/",
        booking_views.appointment_copy_view,
        name="appointment_copy",
    ),
    path(
        "schedule/appointments/<uuid:public_id>/restore/",
        booking_views.appointment_restore_view,
        name="appointment_restore",
    ),
    path("schedule/waitlist/", panels.waitlist_panel, name="waitlist"),
    path("schedule/waitlist/add/", panels.waitlist_add_view, name="waitlist_add"),
    path(
        "schedule/waitlist/<uuid:public_id>/cancel/",
        panels.waitlist_cancel_view,
        name="waitlist_cancel",
    ),
    path("schedule/trash/", panels.trash_panel, name="trash"),
    path("schedule/free-time/", free_time.free_time, name="free_time"),
    *print_urls.urlpatterns,
    *list_urls.urlpatterns,
    *live_urls.urlpatterns,
]

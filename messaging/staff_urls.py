"""The staff's messaging pages; included under /desk/messages/."""

from django.urls import path

from . import staff_views

app_name = "messaging_desk"

urlpatterns = [
    path("", staff_views.inbox, name="inbox"),
    path("conversations/<uuid:public_id>/", staff_views.conversation_page, name="conversation"),
    path(
        "conversations/<uuid:public_id>/reply/",
        staff_views.conversation_reply_view,
        name="conversation_reply",
    ),
    path(
        "conversations/<uuid:public_id>/dismiss/",
        staff_views.conversation_dismiss_view,
        name="conversation_dismiss",
    ),
    path("patients/<uuid:public_id>/", staff_views.patient_messages_view, name="patient"),
    path(
        "appointments/<uuid:public_id>/",
        staff_views.appointment_messages_page,
        name="appointment",
    ),
    path("reviews/", staff_views.reviews, name="reviews"),
    path(
        "reviews/<uuid:public_id>/close/",
        staff_views.feedback_task_close_view,
        name="feedback_close",
    ),
]

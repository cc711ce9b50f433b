"""The public rating page a visit's ``{feedback_link}`` opens; included under /portal/feedback/."""

from django.urls import path

from . import portal_views

app_name = "messaging_feedback"

urlpatterns = [
    path("<str:token>/", portal_views.rate, name="rate"),
]

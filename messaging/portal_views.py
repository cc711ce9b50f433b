"""The patient's rating page: 1–5 and a comment, once per completed visit, without an account.

The signed link is the only key; a forged or expired one gets a page saying so, a visit not yet
completed or already rated gets a polite explanation instead of the form.
"""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from portal.views import portal_page
from scheduling.models import AppointmentStatus

from .feedback import (
    MAX_COMMENT_LENGTH,
    RATINGS,
    FeedbackError,
    FeedbackNotOpen,
    appointment_for_feedback,
    existing_feedback,
    feedback_record,
)
from .models import FeedbackSource


class RatingForm(forms.Form):
    rating = forms.TypedChoiceField(
        label=gettext_lazy("Your rating"),
        choices=[(value, str(value)) for value in RATINGS],
        coerce=int,
        widget=forms.RadioSelect,
        error_messages={
            "required": gettext_lazy("Your rating: choose from 1 to 5."),
            "invalid_choice": gettext_lazy("Your rating: choose from 1 to 5."),
        },
    )
    comment = forms.CharField(
        label=gettext_lazy("What would you like to tell us?"),
        required=False,
        max_length=MAX_COMMENT_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
        error_messages={
            "max_length": gettext_lazy(
                "Comment: at most %(limit_value)d characters (it has %(show_value)d)."
            )
        },
    )


@require_http_methods(["GET", "POST"])
@portal_page(no_store=True)
def rate(request: HttpRequest, token: str) -> HttpResponse:
    """The rating form of the visit the link was signed for; the answer is recorded once."""
    appointment = appointment_for_feedback(token)
    if appointment is None:
        return render(request, "messaging/feedback_invalid.html", status=404)
    context = {"appointment": appointment, "zone": appointment.branch.time_zone, "ratings": RATINGS}
    if existing_feedback(appointment) is not None:
        status = 409 if request.method == "POST" else 200
        return render(
            request, "messaging/feedback_done.html", {**context, "again": True}, status=status
        )
    if appointment.status.code != AppointmentStatus.COMPLETED:
        status = 409 if request.method == "POST" else 200
        return render(request, "messaging/feedback_not_yet.html", context, status=status)
    if request.method != "POST":
        initial = {"rating": request.GET.get("rating", "")}
        form = RatingForm(initial=initial)
        return render(request, "messaging/feedback_form.html", {**context, "form": form})
    form = RatingForm(request.POST)
    if not form.is_valid():
        return render(
            request, "messaging/feedback_form.html", {**context, "form": form}, status=400
        )
    try:
        feedback = feedback_record(
            appointment=appointment,
            rating=form.cleaned_data["rating"],
            comment=form.cleaned_data["comment"],
            source=FeedbackSource.PORTAL,
        )
    except FeedbackError as refusal:
        if refusal.field in form.fields:
            form.add_error(refusal.field, str(refusal.message))
            return render(
                request, "messaging/feedback_form.html", {**context, "form": form}, status=400
            )
        if isinstance(refusal, FeedbackNotOpen):
            return render(
                request, "messaging/feedback_not_yet.html", context, status=refusal.status_code
            )
        return render(
            request,
            "messaging/feedback_done.html",
            {**context, "again": True},
            status=refusal.status_code,
        )
    return render(request, "messaging/feedback_done.html", {**context, "feedback": feedback})

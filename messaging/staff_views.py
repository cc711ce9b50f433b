"""The staff's messaging pages, under /desk/messages/: the conversations inbox and a
conversation with its reply form, a patient's and an appointment's messages, and the reviews
list where managers close the tasks low ratings open.

Every page checks its policy first (a refusal is recorded and answered 403) and fetches rows
through selectors scoped to the actor's branches, so another branch's conversation or rating
answers 404 as if it did not exist. Filters are GET forms, so a list is a URL to bookmark; a
value that cannot be read is named and the page answers 400 without a list.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from clinic.core.models import Branch
from clinic.core.selectors import branch_list
from patients.policies import can_view_people
from patients.selectors import person_get_for_actor
from patients.views import requires
from scheduling.selectors import appointment_get_for_actor

from .conversations import (
    MAX_REPLY_LENGTH,
    ConversationError,
    appointment_messages,
    can_answer_conversations,
    conversation_dismiss,
    conversation_get_for_actor,
    conversation_list,
    conversation_messages,
    conversation_reply,
    message_rows,
    patient_conversations,
    patient_messages,
    whatsapp_window_closed,
)
from .feedback import (
    MAX_NOTE_LENGTH,
    FeedbackError,
    can_review_feedback,
    existing_feedback,
    feedback_get_for_actor,
    feedback_list,
    feedback_task_close,
)
from .models import LOW_RATING, Conversation

PAGE_SIZE = 50


def _problems(form: forms.Form) -> list[str]:
    """Each refused value as "field “value”: why", in the active language."""
    problems = []
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        label = str(field.label) if field is not None else name
        raw = form.data.get(name, "")
        for error in errors:
            problems.append(
                _("%(field)s “%(value)s”: %(problem)s")
                % {"field": label, "value": raw, "problem": error}
            )
    return problems


class _BranchField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Branch) -> str:
        return obj.name


def _branch_field() -> _BranchField:
    return _BranchField(
        label=gettext_lazy("Branch"),
        queryset=Branch.objects.none(),
        to_field_name="public_id",
        required=False,
        empty_label=gettext_lazy("All my branches"),
        error_messages={"invalid_choice": gettext_lazy("Not one of your branches.")},
    )


# ---- the conversations inbox ----------------------------------------------------------------


class InboxFilterForm(forms.Form):
    branch = _branch_field()
    everything = forms.BooleanField(
        label=gettext_lazy("Also answered conversations"), required=False
    )

    def __init__(self, *args: Any, actor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        branch = self.fields["branch"]
        assert isinstance(branch, forms.ModelChoiceField)
        branch.queryset = branch_list(actor=actor).order_by("name")


@require_GET
@requires(can_answer_conversations)
def inbox(request: HttpRequest) -> HttpResponse:
    """Conversations of the actor's branches waiting for an answer, the latest first."""
    form = InboxFilterForm(request.GET or None, actor=request.user)
    context: dict[str, Any] = {"form": form, "page": None, "problems": []}
    if form.is_bound and not form.is_valid():
        context["problems"] = _problems(form)
        return render(request, "messaging/inbox.html", context, status=400)
    data = form.cleaned_data if form.is_bound else {"branch": None, "everything": False}
    conversations = conversation_list(
        actor=request.user, branch=data["branch"], waiting_only=not data["everything"]
    )
    context["page"] = Paginator(conversations, PAGE_SIZE).get_page(request.GET.get("page"))
    context["filter_query"] = request.GET.copy()
    return render(request, "messaging/inbox.html", context)


def _conversation_page(
    request: HttpRequest,
    conversation: Conversation,
    *,
    body: str = "",
    problem: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        "conversation": conversation,
        "rows": message_rows(conversation_messages(conversation)),
        "body": body,
        "problem": problem,
        "max_length": MAX_REPLY_LENGTH,
        "window_closed": whatsapp_window_closed(conversation),
    }
    return render(request, "messaging/conversation.html", context, status=status)


@require_GET
@requires(can_answer_conversations)
def conversation_page(request: HttpRequest, public_id: Any) -> HttpResponse:
    """The thread, in and out, with every message's delivery state, and the reply form."""
    conversation = conversation_get_for_actor(actor=request.user, public_id=public_id)
    return _conversation_page(request, conversation)


@require_POST
@requires(can_answer_conversations)
def conversation_reply_view(request: HttpRequest, public_id: Any) -> HttpResponse:
    """Send the reply; a refused text is shown again with the reason (400)."""
    conversation = conversation_get_for_actor(actor=request.user, public_id=public_id)
    body = request.POST.get("body", "")
    try:
        conversation_reply(actor=request.user, conversation=conversation, body=body)
    except ConversationError as refusal:
        return _conversation_page(
            request, conversation, body=body, problem=str(refusal.message), status=400
        )
    messages.success(request, _("The reply is on its way to the patient."))
    return redirect("messaging_desk:conversation", public_id=conversation.public_id)


@require_POST
@requires(can_answer_conversations)
def conversation_dismiss_view(request: HttpRequest, public_id: Any) -> HttpResponse:
    conversation = conversation_get_for_actor(actor=request.user, public_id=public_id)
    conversation_dismiss(actor=request.user, conversation=conversation)
    messages.success(request, _("The conversation is marked as needing no answer."))
    return redirect("messaging_desk:inbox")


# ---- a patient's and an appointment's messages ----------------------------------------------


@require_GET
@requires(can_view_people)
def patient_messages_view(request: HttpRequest, public_id: Any) -> HttpResponse:
    """The patient's latest messages, failures marked: a fragment for the patient page (htmx)
    or a page of its own."""
    person = person_get_for_actor(actor=request.user, public_id=public_id)
    context = {
        "person": person,
        "rows": message_rows(patient_messages(person)),
        "conversations": patient_conversations(person),
        "may_answer": can_answer_conversations(request.user),
    }
    if request.headers.get("HX-Request"):
        return render(request, "messaging/_patient_messages.html", context)
    return render(request, "messaging/patient_messages.html", context)


def _may_see_visit_messages(user: Any) -> bool:
    """The desk, and the managers who follow a rating to its visit."""
    return can_answer_conversations(user) or can_review_feedback(user)


@require_GET
@requires(_may_see_visit_messages)
def appointment_messages_page(request: HttpRequest, public_id: Any) -> HttpResponse:
    """What was sent and received about one visit, its rating, and the patient's
    conversations."""
    appointment = appointment_get_for_actor(actor=request.user, public_id=public_id)
    patient = appointment.patient
    context = {
        "appointment": appointment,
        "zone": appointment.branch.time_zone,
        "rows": message_rows(appointment_messages(appointment)),
        "feedback": existing_feedback(appointment),
        "conversations": patient_conversations(patient) if patient is not None else [],
        "may_answer": can_answer_conversations(request.user),
    }
    return render(request, "messaging/appointment_messages.html", context)


# ---- reviews --------------------------------------------------------------------------------


class ReviewFilterForm(forms.Form):
    branch = _branch_field()
    low = forms.BooleanField(required=False)
    open = forms.BooleanField(label=gettext_lazy("Open tasks only"), required=False)

    def __init__(self, *args: Any, actor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["low"].label = _("Rating %(low)s or lower") % {"low": LOW_RATING}
        branch = self.fields["branch"]
        assert isinstance(branch, forms.ModelChoiceField)
        branch.queryset = branch_list(actor=actor).order_by("name")


def _reviews_page(
    request: HttpRequest,
    query: QueryDict,
    *,
    status: int = 200,
    failed_close: dict[str, Any] | None = None,
    refusal: str = "",
) -> HttpResponse:
    filters = query.copy()
    filters.pop("page", None)
    form = ReviewFilterForm(filters or None, actor=request.user)
    context: dict[str, Any] = {
        "form": form,
        "page": None,
        "problems": [],
        "filter_query": filters,
        "filters": filters.urlencode(),
        "failed_close": failed_close or {},
        "note_max_length": MAX_NOTE_LENGTH,
        "low_rating": LOW_RATING,
    }
    if form.is_bound and not form.is_valid():
        context["problems"] = _problems(form)
        return render(request, "messaging/reviews.html", context, status=400)
    if refusal:
        context["problems"] = [refusal]
    data = form.cleaned_data if form.is_bound else {"branch": None, "low": False, "open": False}
    ratings = feedback_list(
        actor=request.user, branch=data["branch"], low_only=data["low"], open_only=data["open"]
    )
    context["page"] = Paginator(ratings, PAGE_SIZE).get_page(query.get("page"))
    return render(request, "messaging/reviews.html", context, status=status)


@require_GET
@requires(can_review_feedback)
def reviews(request: HttpRequest) -> HttpResponse:
    """Patients' ratings of the actor's branches, filtered by branch, low ratings and open
    tasks, 50 a page; an open task is closed from its row with a note."""
    return _reviews_page(request, request.GET)


@require_POST
@requires(can_review_feedback)
def feedback_task_close_view(request: HttpRequest, public_id: Any) -> HttpResponse:
    """Close a task with a note; back to the same filtered list, or the list again with the
    reason next to the note (400)."""
    feedback = feedback_get_for_actor(actor=request.user, public_id=public_id)
    filters = QueryDict(request.POST.get("filters", ""))
    note = request.POST.get("resolution_note", "")
    try:
        feedback_task_close(actor=request.user, feedback=feedback, note=note)
    except FeedbackError as refusal:
        if refusal.field != "resolution_note":  # the task is no longer open: no form to show it
            return _reviews_page(request, filters, status=400, refusal=str(refusal.message))
        failed = {"public_id": feedback.public_id, "note": note, "problem": refusal.message}
        return _reviews_page(request, filters, status=400, failed_close=failed)
    messages.success(request, _("The task is closed."))
    url = reverse("messaging_desk:reviews")
    encoded = filters.urlencode()
    return redirect(f"{url}?{encoded}" if encoded else url)

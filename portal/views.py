"""The patient portal's public pages and booking wizard (server-rendered, no login).

The wizard keeps its state in the session: the chosen slot id, this browser's hold token and
the patient's details between the details and the code steps. Nothing is written to the
schedule before the code is confirmed; the hold is the only trace until then and is released
when the patient cancels the wizard.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from clinic.core.selectors import branch_public_list
from integrations.website.booking import ContainedPatient
from patients.normalizers import normalize_name_part
from scheduling.models import Service

from . import selectors
from .booking import (
    PARTS_OF_DAY,
    ChosenSlot,
    portal_book,
    portal_cancel,
    slot_chosen,
    slot_give_up,
    slot_take,
    slots_offered,
)
from .codes import code_send, code_verify, phone_checked
from .errors import PortalError
from .links import appointment_from_token, appointment_token
from .models import CodePurpose

SESSION_KEY = "portal_booking"
HOLD_TOKEN_KEY = "portal_hold_token"  # noqa: S105 (a session key, not a secret)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

View = Callable[..., HttpResponse]


def portal_page(*, no_store: bool = False) -> Callable[[View], View]:
    """Strict headers on portal pages; wizard steps are never stored by the browser."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            response = view(request, *args, **kwargs)
            response["Referrer-Policy"] = "same-origin"
            response["X-Frame-Options"] = "DENY"
            response["Permissions-Policy"] = PERMISSIONS_POLICY
            if no_store:
                response["Cache-Control"] = "no-store"
            return response

        return wrapped

    return decorate


# -- public pages ------------------------------------------------------------------------


@require_GET
@portal_page()
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/home.html", {"branches": selectors.branch_cards()})


@require_GET
@portal_page()
def doctor_list(request: HttpRequest) -> HttpResponse:
    specialty = request.GET.get("specialty", "")
    branch = request.GET.get("branch", "")
    audience = request.GET.get("audience", "")
    every = selectors.doctor_cards()
    context = {
        "cards": selectors.doctor_cards(specialty=specialty, branch=branch, audience=audience),
        "specialties": selectors.specialties(every),
        "branches": branch_public_list().order_by("name", "pk"),
        "chosen": {"specialty": specialty, "branch": branch, "audience": audience},
    }
    return render(request, "portal/doctors.html", context)


@require_GET
@portal_page()
def doctor_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    card = selectors.doctor_card(str(public_id))
    if card is None:
        raise Http404(_("This doctor cannot be booked online."))
    return render(request, "portal/doctor.html", {"card": card})


@require_GET
@portal_page()
def service_list(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/services.html", {"cards": selectors.service_cards()})


# -- booking wizard ----------------------------------------------------------------------


def _hold_token(request: HttpRequest) -> str:
    token = request.session.get(HOLD_TOKEN_KEY)
    if not token:
        token = secrets.token_urlsafe(18)
        request.session[HOLD_TOKEN_KEY] = token
    return str(token)


def _state(request: HttpRequest) -> dict[str, Any]:
    return dict(request.session.get(SESSION_KEY) or {})


def _save_state(request: HttpRequest, state: dict[str, Any]) -> None:
    request.session[SESSION_KEY] = state


def _chosen(request: HttpRequest) -> ChosenSlot | None:
    slot_id = _state(request).get("slot")
    if not slot_id:
        return None
    try:
        return slot_chosen(str(slot_id))
    except PortalError:
        return None


class SearchForm(forms.Form):
    service = forms.ChoiceField(label=gettext_lazy("Service"), required=False)
    doctor = forms.ChoiceField(label=gettext_lazy("Doctor"), required=False)
    branch = forms.ChoiceField(label=gettext_lazy("Branch"), required=False)
    date = forms.DateField(
        label=gettext_lazy("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    part_of_day = forms.ChoiceField(label=gettext_lazy("Time of day"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schedules = selectors.bookable_schedules()
        services = {s.public_id: s for entry in schedules for s in entry.services}
        doctors = {entry.doctor.public_id: entry.doctor for entry in schedules}
        branches = {entry.branch.public_id: entry.branch for entry in schedules}
        anything = ("", _("Any"))
        self.services = services
        choices: dict[str, list[tuple[str, Any]]] = {
            "service": [("", _("Choose a service")), *_named(services)],
            "doctor": [anything, *_named(doctors)],
            "branch": [anything, *_named(branches)],
            "part_of_day": [anything]
            + [(key, label) for key, (label, _low, _high) in PARTS_OF_DAY.items()],
        }
        for name, options in choices.items():
            cast(forms.ChoiceField, self.fields[name]).choices = options

    def chosen_service(self) -> Service | None:
        wanted = self.cleaned_data.get("service") or ""
        return next((s for key, s in self.services.items() if str(key) == wanted), None)


def _named(rows: dict[Any, Any]) -> list[tuple[str, str]]:
    return [(str(key), row.name) for key, row in sorted(rows.items(), key=lambda i: i[1].name)]


class DetailsForm(forms.Form):
    last_name = forms.CharField(label=gettext_lazy("Last name"), max_length=100)
    first_name = forms.CharField(label=gettext_lazy("First name"), max_length=100)
    patronymic = forms.CharField(label=gettext_lazy("Patronymic"), max_length=100, required=False)
    phone = forms.CharField(
        label=gettext_lazy("Phone"),
        max_length=32,
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel"}),
    )
    birth_date = forms.DateField(
        label=gettext_lazy("Birth date"), widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean_birth_date(self) -> datetime.date:
        value: datetime.date = self.cleaned_data["birth_date"]
        if value > timezone.localdate():
            raise forms.ValidationError(_("The birth date cannot be in the future."))
        return value

    def clean_phone(self) -> str:
        try:
            return phone_checked(self.cleaned_data["phone"])
        except PortalError as refusal:
            raise forms.ValidationError(str(refusal.message)) from None


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code from the message"),
        max_length=6,
        min_length=6,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


def _search_page(
    request: HttpRequest, *, error: PortalError | None = None, status: int = 200
) -> HttpResponse:
    form = SearchForm(request.GET or None)
    slots = []
    service = None
    if form.is_valid():
        service = form.chosen_service()
    if service is not None:
        data = form.cleaned_data
        slots = slots_offered(
            service=service,
            doctor_public_id=data["doctor"],
            branch_public_id=data["branch"],
            date_from=data["date"],
            part_of_day=data["part_of_day"],
            hold_token=_hold_token(request),
        )
    days: dict[datetime.date, list[Any]] = {}
    for slot in slots:
        days.setdefault(slot.starts_at.date(), []).append(slot)
    context = {"form": form, "service": service, "days": days, "error": error}
    return render(request, "portal/book_search.html", context, status=status)


@require_GET
@portal_page(no_store=True)
def book(request: HttpRequest) -> HttpResponse:
    """Search for a time; ``?slot=`` (the feeds' deep link) opens the hold step for that slot."""
    slot_id = request.GET.get("slot", "")
    if slot_id:
        try:
            chosen = slot_chosen(slot_id)
        except PortalError as refusal:
            return _search_page(request, error=refusal, status=refusal.status_code)
        return render(request, "portal/book_slot.html", {"chosen": chosen})
    return _search_page(request)


@require_POST
@portal_page(no_store=True)
def book_hold(request: HttpRequest) -> HttpResponse:
    """Hold the picked slot for this browser and go on to the patient's details."""
    token = _hold_token(request)
    try:
        chosen = slot_chosen(request.POST.get("slot", ""))
        # Holding with the same token gives up the slot this browser picked before.
        slot_take(chosen, token=token)
    except PortalError as refusal:
        return _search_page(request, error=refusal, status=refusal.status_code)
    _save_state(request, {"slot": chosen.slot_id})
    return redirect("portal:book_details")


@require_http_methods(["GET", "POST"])
@portal_page(no_store=True)
def book_details(request: HttpRequest) -> HttpResponse:
    """The patient's name, phone and birth date; sends the one-time code to the phone."""
    chosen = _chosen(request)
    if chosen is None:
        return redirect("portal:book")
    state = _state(request)
    form = DetailsForm(request.POST or None, initial=state.get("details"))
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            details = {
                "last_name": normalize_name_part(data["last_name"]),
                "first_name": normalize_name_part(data["first_name"]),
                "patronymic": normalize_name_part(data["patronymic"]),
                "phone": data["phone"],
                "birth_date": data["birth_date"].isoformat(),
            }
            try:
                code_send(
                    phone=details["phone"],
                    purpose=CodePurpose.BOOKING,
                    ip=request.META.get("REMOTE_ADDR"),
                )
            except PortalError as refusal:
                form.add_error(refusal.field or None, str(refusal.message))
                status = refusal.status_code
            else:
                state["details"] = details
                _save_state(request, state)
                return redirect("portal:book_code")
    context = {"form": form, "chosen": chosen}
    return render(request, "portal/book_details.html", context, status=status)


@require_http_methods(["GET", "POST"])
@portal_page(no_store=True)
def book_code(request: HttpRequest) -> HttpResponse:
    """Check the code and book; every refusal leaves nothing booked."""
    chosen = _chosen(request)
    state = _state(request)
    details = state.get("details")
    if chosen is None or not details:
        return redirect("portal:book")
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            if not code_verify(
                phone=details["phone"],
                purpose=CodePurpose.BOOKING,
                code=form.cleaned_data["code"],
            ):
                form.add_error(
                    "code", _("The code is wrong or has expired. Check it or ask for a new one.")
                )
            else:
                patient = ContainedPatient(
                    last_name=details["last_name"],
                    first_name=details["first_name"],
                    patronymic=details["patronymic"],
                    phone=details["phone"],
                    birth_date=datetime.date.fromisoformat(details["birth_date"]),
                )
                try:
                    appointment = portal_book(
                        chosen=chosen, patient=patient, token=_hold_token(request)
                    )
                except PortalError as refusal:
                    form.add_error(None, str(refusal.message))
                    status = refusal.status_code
                else:
                    request.session.pop(SESSION_KEY, None)
                    request.session["portal_booked"] = str(appointment_token(appointment))
                    return redirect("portal:book_done")
    context = {"form": form, "chosen": chosen, "phone": details["phone"]}
    return render(request, "portal/book_code.html", context, status=status)


@require_GET
@portal_page(no_store=True)
def book_done(request: HttpRequest) -> HttpResponse:
    token = request.session.get("portal_booked")
    appointment = appointment_from_token(str(token)) if token else None
    if appointment is None:
        return redirect("portal:book")
    context = {"appointment": appointment, "token": token, "zone": appointment.branch.time_zone}
    return render(request, "portal/book_done.html", context)


@require_POST
@portal_page(no_store=True)
def book_cancel(request: HttpRequest) -> HttpResponse:
    """Leave the wizard: the held time is given back at once."""
    chosen = _chosen(request)
    if chosen is not None:
        slot_give_up(chosen, token=_hold_token(request))
    request.session.pop(SESSION_KEY, None)
    return redirect("portal:book")


# -- signed appointment link -------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@portal_page(no_store=True)
def appointment_link(request: HttpRequest, token: str) -> HttpResponse:
    """The appointment a signed link names: shown, and cancelled on request."""
    appointment = appointment_from_token(token)
    if appointment is None:
        return render(request, "portal/link_invalid.html", status=404)
    error = None
    status = 200
    if request.method == "POST" and not appointment.status.is_final:
        try:
            appointment = portal_cancel(appointment)
        except PortalError as refusal:
            error = refusal
            status = refusal.status_code
    context = {
        "appointment": appointment,
        "error": error,
        "zone": appointment.branch.time_zone,
    }
    return render(request, "portal/appointment.html", context, status=status)

"""The patient portal's public pages and booking wizard (server-rendered, no login).

The wizard keeps its state in the session: the chosen slot id, this browser's hold token and
the patient's details (and a child's representative's) between the details and the code steps.
Nothing is written to the schedule before the code is confirmed; the hold is the only trace until
then and is released when the patient cancels the wizard. Every step answers the same way
whether or not the phone or the name belongs to a registered patient.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django import forms
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.errors import BillingError
from billing.models import OnlinePaymentState
from billing.online import online_payment_refresh, payment_gateway
from clinic.core.net import client_ip
from clinic.core.selectors import branch_public_list
from integrations.website.booking import ContainedPatient
from patients.models import ADULT_AGE_YEARS, Relation
from patients.normalizers import normalize_name_part
from scheduling.models import Appointment, Service

from . import selectors
from .account import change_allowed
from .booking import (
    PARTS_OF_DAY,
    ChosenSlot,
    OfferedSlot,
    Representative,
    age_on,
    booking_limits_checked,
    patient_refusal,
    portal_book,
    portal_cancel,
    slot_chosen,
    slot_free_check,
    slot_give_up,
    slot_take,
    slots_offered,
)
from .codes import code_send, code_verify, phone_checked
from .errors import PortalError
from .links import appointment_from_token, appointment_token
from .models import CodePurpose
from .notices import booking_confirmation_queue
from .prepayment import latest_online_payment, prepayment_offered, prepayment_start, visit_price
from .pricing import PortalPrice, portal_price
from .selectors import consultation_mode

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
    every = selectors.doctor_cards(priced=False)
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


class Patient:
    SELF = "self"
    CHILD = "child"


REPRESENTATIVE_RELATIONS = [
    (Relation.MOTHER.value, Relation.MOTHER.label),
    (Relation.FATHER.value, Relation.FATHER.label),
    (Relation.GUARDIAN.value, Relation.GUARDIAN.label),
    (Relation.TRUSTEE.value, Relation.TRUSTEE.label),
]
REPRESENTATIVE_FIELDS = (
    "rep_last_name",
    "rep_first_name",
    "rep_patronymic",
    "rep_birth_date",
    "rep_relation",
)


def _not_in_future(value: datetime.date | None) -> datetime.date | None:
    if value is not None and value > timezone.localdate():
        raise forms.ValidationError(_("The birth date cannot be in the future."))
    return value


class DetailsForm(forms.Form):
    """Who the patient is: the visitor, or the visitor's child with the visitor as the child's
    legal representative. The phone is always the visitor's: the code goes there."""

    patient = forms.ChoiceField(
        label=gettext_lazy("Who is the patient?"),
        choices=[
            (Patient.SELF, gettext_lazy("The patient is me")),
            (
                Patient.CHILD,
                gettext_lazy("The patient is my child (I am the legal representative)"),
            ),
        ],
        widget=forms.RadioSelect,
        required=False,
        initial=Patient.SELF,
    )
    last_name = forms.CharField(label=gettext_lazy("Patient's last name"), max_length=100)
    first_name = forms.CharField(label=gettext_lazy("Patient's first name"), max_length=100)
    patronymic = forms.CharField(
        label=gettext_lazy("Patient's patronymic"), max_length=100, required=False
    )
    birth_date = forms.DateField(
        label=gettext_lazy("Patient's birth date"), widget=forms.DateInput(attrs={"type": "date"})
    )
    phone = forms.CharField(
        label=gettext_lazy("Your phone"),
        max_length=32,
        help_text=gettext_lazy("We send the code to confirm the booking to this phone."),
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel"}),
    )
    rep_last_name = forms.CharField(
        label=gettext_lazy("Your last name"), max_length=100, required=False
    )
    rep_first_name = forms.CharField(
        label=gettext_lazy("Your first name"), max_length=100, required=False
    )
    rep_patronymic = forms.CharField(
        label=gettext_lazy("Your patronymic"), max_length=100, required=False
    )
    rep_birth_date = forms.DateField(
        label=gettext_lazy("Your birth date"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    rep_relation = forms.ChoiceField(
        label=gettext_lazy("You are the child's"),
        choices=[("", "—"), *REPRESENTATIVE_RELATIONS],
        required=False,
    )

    def __init__(self, *args: Any, chosen: ChosenSlot, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chosen = chosen

    @property
    def patient_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("last_name", "first_name", "patronymic", "birth_date")]

    @property
    def representative_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in REPRESENTATIVE_FIELDS]

    def clean_birth_date(self) -> datetime.date | None:
        return _not_in_future(self.cleaned_data["birth_date"])

    def clean_rep_birth_date(self) -> datetime.date | None:
        return _not_in_future(self.cleaned_data["rep_birth_date"])

    def clean_phone(self) -> str:
        try:
            return phone_checked(self.cleaned_data["phone"])
        except PortalError as refusal:
            raise forms.ValidationError(str(refusal.message)) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        data["patient"] = data.get("patient") or Patient.SELF
        born = data.get("birth_date")
        if data["patient"] == Patient.CHILD:
            required = {
                "rep_last_name": _("Give your last name."),
                "rep_first_name": _("Give your first name."),
                "rep_birth_date": _("Give your birth date."),
                "rep_relation": _("Say who you are to the child."),
            }
            for name, message in required.items():
                if not data.get(name) and name not in self.errors:
                    self.add_error(name, message)
            if born is not None and age_on(born, timezone.localdate()) >= ADULT_AGE_YEARS:
                self.add_error(
                    "birth_date",
                    _("A child must be under %(age)s. A grown-up patient books for themselves.")
                    % {"age": ADULT_AGE_YEARS},
                )
                born = None
        if born is not None and "birth_date" not in self.errors:
            refusal = patient_refusal(self.chosen, born)
            if refusal is not None:
                self.add_error("birth_date", str(refusal.message))
        return data


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
    context = {
        "form": form,
        "service": service,
        "days": days,
        "offers": _doctor_offers(slots),
        "error": error,
    }
    return render(request, "portal/book_search.html", context, status=status)


def _doctor_offers(slots: list[OfferedSlot]) -> list[dict[str, Any]]:
    """Each doctor and branch of the found times once, with the consultation and the price."""
    offers: dict[tuple[int, int], dict[str, Any]] = {}
    for slot in slots:
        offers.setdefault(
            (slot.doctor.pk, slot.branch.pk),
            {
                "doctor": slot.doctor,
                "branch": slot.branch,
                "price": slot.price,
                "mode": consultation_mode(slot.doctor),
            },
        )
    return sorted(offers.values(), key=lambda o: (o["doctor"].name, o["branch"].name))


@require_GET
@portal_page(no_store=True)
def book(request: HttpRequest) -> HttpResponse:
    """Search for a time; ``?slot=`` (the feeds' deep link) opens the hold step for that slot."""
    slot_id = request.GET.get("slot", "")
    if slot_id:
        try:
            chosen = slot_chosen(slot_id)
            slot_free_check(chosen, token=_hold_token(request))
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
    """The patient's name and birth date (a child's with the representative's), and the
    visitor's phone; sends the one-time code to the phone."""
    chosen = _chosen(request)
    if chosen is None:
        return redirect("portal:book")
    state = _state(request)
    form = DetailsForm(request.POST or None, initial=_form_initial(state), chosen=chosen)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            details = {
                "patient": data["patient"],
                "last_name": normalize_name_part(data["last_name"]),
                "first_name": normalize_name_part(data["first_name"]),
                "patronymic": normalize_name_part(data["patronymic"]),
                "phone": data["phone"],
                "birth_date": data["birth_date"].isoformat(),
            }
            if data["patient"] == Patient.CHILD:
                details["representative"] = {
                    "last_name": normalize_name_part(data["rep_last_name"]),
                    "first_name": normalize_name_part(data["rep_first_name"]),
                    "patronymic": normalize_name_part(data["rep_patronymic"]),
                    "birth_date": data["rep_birth_date"].isoformat(),
                    "relation": data["rep_relation"],
                }
            try:
                code_send(
                    phone=details["phone"],
                    purpose=CodePurpose.BOOKING,
                    ip=client_ip(request),
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


def _form_initial(state: dict[str, Any]) -> dict[str, Any]:
    """The details typed before, to fill the form again when the patient comes back to it."""
    details = dict(state.get("details") or {})
    representative = details.pop("representative", None) or {}
    details.update({f"rep_{name}": value for name, value in representative.items()})
    return details


def _booking_parties(details: dict[str, Any]) -> tuple[ContainedPatient, Representative | None]:
    patient = ContainedPatient(
        last_name=details["last_name"],
        first_name=details["first_name"],
        patronymic=details["patronymic"],
        phone=details["phone"],
        birth_date=datetime.date.fromisoformat(details["birth_date"]),
    )
    typed = details.get("representative")
    if not typed:
        return patient, None
    return patient, Representative(
        last_name=typed["last_name"],
        first_name=typed["first_name"],
        patronymic=typed["patronymic"],
        birth_date=datetime.date.fromisoformat(typed["birth_date"]),
        phone=details["phone"],
        relation=typed["relation"],
    )


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
            try:
                # Counted before the code is read: a refused try leaves the code usable.
                booking_limits_checked(phone=details["phone"], ip=client_ip(request))
            except PortalError as refusal:
                form.add_error(None, str(refusal.message))
                status = refusal.status_code
            else:
                status = _code_checked_and_booked(request, form, chosen, details)
                if status == 302:
                    return redirect("portal:book_done")
    context = {
        "form": form,
        "chosen": chosen,
        "phone": details["phone"],
        "for_child": bool(details.get("representative")),
    }
    return render(request, "portal/book_code.html", context, status=status)


def _code_checked_and_booked(
    request: HttpRequest, form: CodeForm, chosen: ChosenSlot, details: dict[str, Any]
) -> int:
    """Book when the code is right: 302 when booked, else the status of the refusal (the
    refusal is added to the form)."""
    if not code_verify(
        phone=details["phone"], purpose=CodePurpose.BOOKING, code=form.cleaned_data["code"]
    ):
        form.add_error(
            "code", _("The code is wrong or has expired. Check it or ask for a new one.")
        )
        return 400
    patient, representative = _booking_parties(details)
    try:
        appointment = portal_book(
            chosen=chosen,
            patient=patient,
            token=_hold_token(request),
            representative=representative,
        )
    except PortalError as refusal:
        form.add_error(None, str(refusal.message))
        return refusal.status_code
    request.session.pop(SESSION_KEY, None)
    token = appointment_token(appointment)
    request.session["portal_booked"] = str(token)
    booking_confirmation_queue(
        appointment=appointment,
        phone=details["phone"],
        link=request.build_absolute_uri(reverse("portal:appointment", args=[token])),
    )
    return 302


def _visit_terms(appointment: Appointment) -> dict[str, Any]:
    """The consultation and the portal's price of the booked visit on its day, for
    ``_appointment.html`` (no price for several services: the portal books one)."""
    doctor = appointment.doctor
    if doctor is None:
        return {}
    services = list(appointment.services.all())
    price: PortalPrice | None = None
    if len(services) == 1:
        day = timezone.localtime(appointment.starts_at, appointment.branch.zone).date()
        price = portal_price(doctor, services[0], on=day, branch=appointment.branch)
    return {"visit_mode": consultation_mode(doctor), "visit_price": price}


@require_GET
@portal_page(no_store=True)
def book_done(request: HttpRequest) -> HttpResponse:
    token = request.session.get("portal_booked")
    appointment = appointment_from_token(str(token)) if token else None
    if appointment is None:
        return redirect("portal:book")
    price = visit_price(appointment)
    context = {
        "appointment": appointment,
        "token": token,
        "zone": appointment.branch.time_zone,
        "prepay_price": price if prepayment_offered(appointment, price) else None,
        "can_pay_online": payment_gateway() is not None,
        **_visit_terms(appointment),
    }
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
    changeable = change_allowed(appointment)
    if request.method == "POST" and not changeable and not appointment.status.is_final:
        error = PortalError(
            "too_late_to_change",
            _(
                "This appointment can no longer be changed online. Please call the clinic: "
                "changes are possible up to %(minutes)s minutes before the visit."
            )
            % {"minutes": settings.PORTAL_CHANGE_NOTICE_MINUTES},
        )
        status = 400
    elif request.method == "POST" and not appointment.status.is_final:
        try:
            appointment = portal_cancel(appointment)
        except PortalError as refusal:
            error = refusal
            status = refusal.status_code
    price = visit_price(appointment)
    context = {
        "appointment": appointment,
        "error": error,
        "changeable": changeable,
        "zone": appointment.branch.time_zone,
        "token": token,
        "prepay_price": price if prepayment_offered(appointment, price) else None,
        "can_pay_online": payment_gateway() is not None,
        **_visit_terms(appointment),
    }
    return render(request, "portal/appointment.html", context, status=status)


@require_POST
@portal_page(no_store=True)
def appointment_pay(request: HttpRequest, token: str) -> HttpResponse:
    """Pay the visit online in advance: to the gateway's page, back to ``appointment_paid``."""
    appointment = appointment_from_token(token)
    if appointment is None:
        return render(request, "portal/link_invalid.html", status=404)
    return_url = request.build_absolute_uri(reverse("portal:appointment_paid", args=[token]))
    try:
        online = prepayment_start(appointment, return_url=return_url)
    except (PortalError, BillingError) as refusal:
        context = {"appointment": appointment, "zone": appointment.branch.time_zone}
        context["error"] = refusal
        return render(request, "portal/appointment.html", context, status=refusal.status_code)
    if online.state == OnlinePaymentState.PENDING and online.confirmation_url:
        return redirect(online.confirmation_url)
    return redirect("portal:appointment_paid", token)


@require_GET
@portal_page(no_store=True)
def appointment_paid(request: HttpRequest, token: str) -> HttpResponse:
    """Where the gateway sends the patient back: the payment's state, read from the gateway."""
    appointment = appointment_from_token(token)
    if appointment is None:
        return render(request, "portal/link_invalid.html", status=404)
    online = latest_online_payment(appointment)
    if online is not None:
        online = online_payment_refresh(online)
    context = {
        "appointment": appointment,
        "online": online,
        "states": OnlinePaymentState,
        "token": token,
        "zone": appointment.branch.time_zone,
    }
    return render(request, "portal/appointment_paid.html", context)


@require_http_methods(["GET", "POST"])
@portal_page(no_store=True)
def appointment_reschedule(request: HttpRequest, token: str) -> HttpResponse:
    """Move the visit a signed link names to another free time, without logging in."""
    from .account_views import reschedule_page

    appointment = appointment_from_token(token)
    if appointment is None:
        return render(request, "portal/link_invalid.html", status=404)
    link = reverse("portal:appointment", args=[token])
    if not change_allowed(appointment):
        return redirect(link)
    return reschedule_page(request, appointment, done_url=link)

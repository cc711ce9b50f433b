"""The desk's patient pages: search, registration, the patient page, cards, duplicates.

Each view checks the role first (403 and a security event for a role without the capability),
then fetches the object through a selector scoped to the actor (404 outside it), calls one
service or selector and renders the result. Rules live in ``services``/``policies``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from clinic.audit.formatting import history_rows
from clinic.audit.models import SecurityEventKind
from clinic.audit.services import security_event_record
from clinic.core.selectors import branch_list, room_list, staff_for_user, staff_list

from . import policies, selectors, services
from .duplicates import duplicate_pairs
from .forms import (
    CardOpenForm,
    ConsentGiveForm,
    ConsentRevokeForm,
    ContactAddForm,
    MergeForm,
    PaperCardIssueForm,
    PersonEditForm,
    RegistrationForm,
    RelationAddForm,
    SearchForm,
    add_service_errors,
    recipient_choices,
)
from .merge import person_merge, person_unmerge
from .models import PHONE_KINDS, ConsentKind, MedicalCard, Person
from .search import person_search

View = Callable[..., HttpResponse]

SEARCH_LIMIT = 20
HISTORY_LIMIT = 50
DUPLICATE_PAIRS_LIMIT = 200
# What a search hit matched on (``SearchHit.matched_on``), as the results list says it.
MATCHED_ON_LABELS = {
    "snils": pgettext_lazy("search matched on", "SNILS"),
    "oms_policy": pgettext_lazy("search matched on", "OMS policy"),
    "card_number": pgettext_lazy("search matched on", "card number"),
    "phone": pgettext_lazy("search matched on", "phone"),
    "birth_date": pgettext_lazy("search matched on", "birth date"),
    "name": pgettext_lazy("search matched on", "name"),
}
# Why a change was made, from the history context the services set.
HISTORY_CONTEXT_NOTES = {
    "duplicate_override_reason": _("Registered despite possible duplicates: %(value)s"),
    "person_merge_reason": _("Merge: %(value)s"),
}
# Bookkeeping columns that change with every edit and mean nothing to the reader.
HISTORY_HIDDEN_FIELDS = frozenset({"name_key", "updated_at", "created_at"})


def requires(policy: Callable[[Any], bool]) -> Callable[[View], View]:
    """Log in first; a role the policy refuses gets the 403 page, and the attempt is recorded."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not policy(request.user):
                security_event_record(
                    kind=SecurityEventKind.ACCESS_DENIED,
                    request=request,
                    user=request.user,
                    detail=f"page {view.__name__}",
                )
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return login_required(wrapper)

    return decorator


# ---- search ---------------------------------------------------------------------------------


@dataclass
class PersonRow:
    """A person as the lists show them: the age and the phones are worked out once."""

    person: Person
    age: int | None
    phones: list[str]
    matched_on: str = ""
    reasons: list[str] = field(default_factory=list)


def person_rows(people: Iterable[Person]) -> list[PersonRow]:
    """Rows of ``people`` with their contacts fetched in one query."""
    people = list(people)
    prefetch_related_objects(people, "contacts")
    today = timezone.localdate()
    return [
        PersonRow(
            person=person,
            age=person.age_on(today),
            phones=[c.value for c in person.contacts.all() if c.kind in PHONE_KINDS],
        )
        for person in people
    ]


def _matched_on(code: str) -> str:
    return str(MATCHED_ON_LABELS.get(code, code))


def _search_rows(actor: Any, query: str) -> list[PersonRow]:
    if not query.strip():
        return []
    hits = person_search(actor=actor, query=query, limit=SEARCH_LIMIT)
    rows = person_rows(hit.person for hit in hits)
    for row, hit in zip(rows, hits, strict=True):
        row.matched_on = _matched_on(hit.matched_on)
    return rows


@require_GET
@requires(policies.can_search_people)
def search(request: HttpRequest) -> HttpResponse:
    """One search box; results appear as one types (htmx) or after Enter (a plain GET)."""
    form = SearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    context = {
        "form": form,
        "query": query,
        "rows": _search_rows(request.user, query),
        "can_register": policies.can_register_patient(request.user),
    }
    return render(request, "patients/search.html", context)


@require_GET
@requires(policies.can_search_people)
def search_results(request: HttpRequest) -> HttpResponse:
    """The results list alone, for the search box's as-you-type requests."""
    form = SearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    context = {
        "query": query,
        "rows": _search_rows(request.user, query),
        "can_register": policies.can_register_patient(request.user),
    }
    response = render(request, "patients/_results.html", context)
    if request.headers.get("HX-Request"):
        # The address bar follows the box, so Back after opening a patient shows these results.
        response["HX-Replace-Url"] = f"{reverse('patients:search')}?{request.GET.urlencode()}"
    return response


# ---- registration ---------------------------------------------------------------------------


def _organization_of(user: Any) -> Any:
    staff = staff_for_user(user)
    if staff is None:
        raise PermissionDenied(gettext("Only staff members register patients."))
    return staff.organization


@requires(policies.can_register_patient)
def register(request: HttpRequest) -> HttpResponse:
    """Register a person; likely duplicates are shown instead, with a way to open them.

    The person and the consent to processing personal data are recorded by one service call.
    """
    organization = _organization_of(request.user)
    form = RegistrationForm(request.POST if request.method == "POST" else None)
    candidates: list[Any] = []
    if request.method == "POST" and form.is_valid():
        force_reason = form.cleaned_data["force_reason"] if form.wants_force else ""
        try:
            person = services.person_create(
                actor=request.user,
                organization=organization,
                data=form.person_input(),
                force_reason=force_reason,
                personal_data_consent=(
                    form.cleaned_data["consent_source"]
                    if form.cleaned_data["consent_personal_data"]
                    else ""
                ),
            )
        except services.DuplicatePersonError as error:
            candidates = error.candidates
            if form.wants_force:
                form.add_error(
                    "force_reason",
                    gettext("Say why this person must be registered despite the matches."),
                )
        except ValidationError as error:
            add_service_errors(
                form, error, contact_fields=tuple(name for name, _kind in form.contact_fields)
            )
        else:
            messages.success(
                request,
                gettext("%(name)s is registered.") % {"name": person.full_name},
            )
            return redirect("patients:detail", public_id=person.public_id)
    rows = person_rows(candidate.person for candidate in candidates)
    for row, candidate in zip(rows, candidates, strict=True):
        row.reasons = candidate.reason_labels
    context = {
        "form": form,
        "candidates": rows,
        "can_force": policies.can_force_duplicate(request.user),
    }
    return render(request, "patients/register.html", context)


# ---- the patient page -----------------------------------------------------------------------


def _card_rows(actor: Any, cards: list[MedicalCard]) -> list[tuple[MedicalCard, bool]]:
    """Each visible card with whether the actor may move its paper card; the policy is asked once
    per card type, so the page's query count does not grow with the number of cards."""
    movable: dict[int, bool] = {}
    for card in cards:
        if card.card_type_id not in movable:
            movable[card.card_type_id] = policies.can_move_paper_card(actor, card)
    return [(card, movable[card.card_type_id]) for card in cards]


def _card_open_form(actor: Any, person: Person, data: Any = None) -> CardOpenForm:
    return CardOpenForm(
        data,
        card_types=selectors.card_types_for_actor(actor).filter(
            Q(organization__isnull=True) | Q(organization=person.organization_id)
        ),
        branches=branch_list(actor=actor).filter(organization=person.organization_id),
    )


def _issue_recipients(actor: Any) -> list[Any]:
    return recipient_choices(staff_list(actor=actor), room_list(actor=actor))


def _person_page(
    request: HttpRequest, person: Person, *, status: int = 200, **forms: Any
) -> HttpResponse:
    """The patient page; a sub-form that failed is passed in bound, to show its errors."""
    actor = request.user
    person = selectors.person_with_details(actor=actor, person=person)
    can_edit = policies.can_edit_person(actor, person)
    cards = _card_rows(actor, person.visible_cards)  # type: ignore[attr-defined]
    recipients = _issue_recipients(actor) if any(movable for _card, movable in cards) else []
    consents = list(person.consents.all())
    context = {
        "person": person,
        "age": person.age_on(timezone.localdate()),
        "contacts": list(person.contacts.all()),
        "consents": [
            (
                consent,
                ConsentRevokeForm(auto_id=f"id_revoke_{consent.public_id.hex[:8]}_%s")
                if can_edit and consent.is_active
                else None,
            )
            for consent in consents
        ],
        "has_personal_data_consent": any(
            consent.kind == ConsentKind.PERSONAL_DATA and consent.is_active for consent in consents
        ),
        "relations": list(person.relations.all()),
        "cards": [
            (
                card,
                movable,
                PaperCardIssueForm(
                    recipients=recipients, auto_id=f"id_issue_{card.public_id.hex[:8]}_%s"
                )
                if movable
                else None,
            )
            for card, movable in cards
        ],
        "can_edit": can_edit,
        "can_merge": policies.can_merge_people(actor),
        "history": history_rows(
            person,
            limit=HISTORY_LIMIT,
            hidden_fields=HISTORY_HIDDEN_FIELDS,
            context_notes=HISTORY_CONTEXT_NOTES,
        ),
        "contact_form": forms.get("contact_form") or ContactAddForm(auto_id="id_contact_%s"),
        "consent_form": forms.get("consent_form") or ConsentGiveForm(auto_id="id_consent_%s"),
        "card_form": None,
    }
    if can_edit:
        card_form = forms.get("card_form") or _card_open_form(actor, person)
        if card_form.has_card_types():
            context["card_form"] = card_form
    return render(request, "patients/detail.html", context, status=status)


@require_GET
@requires(policies.can_view_people)
def detail(request: HttpRequest, public_id: Any) -> HttpResponse:
    """The patient page, or the tombstone of a person merged into another one."""
    person = selectors.person_get_for_actor(
        actor=request.user, public_id=public_id, include_merged=True
    )
    if person.is_tombstone:
        return _tombstone_page(request, person)
    return _person_page(request, person)


def _person_for_edit(request: HttpRequest, public_id: Any) -> Person:
    return selectors.person_get_for_actor(actor=request.user, public_id=public_id)


@requires(policies.can_register_patient)
def edit(request: HttpRequest, public_id: Any) -> HttpResponse:
    person = _person_for_edit(request, public_id)
    if not policies.can_edit_person(request.user, person):
        raise PermissionDenied
    initial = {name: getattr(person, name) for name in PersonEditForm.base_fields}
    form = PersonEditForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        changes = form.changes()
        if not changes:
            messages.info(request, gettext("Nothing was changed."))
            return redirect("patients:detail", public_id=person.public_id)
        try:
            services.person_update(actor=request.user, person=person, changes=changes)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, gettext("The changes are saved."))
            return redirect("patients:detail", public_id=person.public_id)
    return render(request, "patients/edit.html", {"person": person, "form": form})


@require_POST
@requires(policies.can_register_patient)
def contact_add(request: HttpRequest, public_id: Any) -> HttpResponse:
    person = _person_for_edit(request, public_id)
    form = ContactAddForm(request.POST, auto_id="id_contact_%s")
    if form.is_valid():
        try:
            services.contact_add(actor=request.user, person=person, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error, contact_fields=("value",))
        else:
            messages.success(request, gettext("The contact is added."))
            return redirect("patients:detail", public_id=person.public_id)
    return _person_page(request, person, contact_form=form)


@require_POST
@requires(policies.can_register_patient)
def consent_give(request: HttpRequest, public_id: Any) -> HttpResponse:
    person = _person_for_edit(request, public_id)
    form = ConsentGiveForm(request.POST, auto_id="id_consent_%s")
    if form.is_valid():
        try:
            services.consent_give(actor=request.user, person=person, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, gettext("The consent is recorded."))
            return redirect("patients:detail", public_id=person.public_id)
    return _person_page(request, person, consent_form=form)


@require_POST
@requires(policies.can_register_patient)
def consent_revoke(request: HttpRequest, public_id: Any, consent_id: Any) -> HttpResponse:
    person = _person_for_edit(request, public_id)
    consent = person.consents.filter(public_id=consent_id).first()
    if consent is None:
        raise Http404
    form = ConsentRevokeForm(request.POST)
    if not form.is_valid():
        _error_messages(request, form.errors.values())
        return redirect("patients:detail", public_id=person.public_id)
    try:
        services.consent_revoke(actor=request.user, consent=consent, **form.cleaned_data)
    except ValidationError as error:
        _error_messages(request, [error.messages])
    else:
        messages.success(request, gettext("The consent is revoked."))
    return redirect("patients:detail", public_id=person.public_id)


@requires(policies.can_register_patient)
def relation_add(request: HttpRequest, public_id: Any) -> HttpResponse:
    """Link a relative or a representative, found with the same search as the search page."""
    person = _person_for_edit(request, public_id)
    if not policies.can_edit_person(request.user, person):
        raise PermissionDenied
    search_form = SearchForm(request.GET)
    query = search_form.cleaned_data["q"] if search_form.is_valid() else ""
    if request.method == "POST":
        query = request.POST.get("q", "")
    rows = [row for row in _search_rows(request.user, query) if row.person.pk != person.pk]
    choices = [(str(row.person.public_id), row.person.full_name) for row in rows]
    form = RelationAddForm(
        request.POST if request.method == "POST" else None,
        relatives=choices,
        person_name=person.full_name,
    )
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        relative = selectors.person_get_for_actor(
            actor=request.user, public_id=data.pop("relative")
        )
        try:
            services.relation_add(actor=request.user, person=person, relative=relative, **data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, gettext("The relation is added."))
            return redirect("patients:detail", public_id=person.public_id)
    context = {
        "person": person,
        "search_form": search_form,
        "query": query,
        "rows": rows,
        "form": form,
    }
    return render(request, "patients/relation_add.html", context)


# ---- medical cards --------------------------------------------------------------------------


@require_POST
@requires(policies.can_register_patient)
def card_open(request: HttpRequest, public_id: Any) -> HttpResponse:
    person = _person_for_edit(request, public_id)
    form = _card_open_form(request.user, person, request.POST)
    if form.is_valid():
        try:
            card = services.card_open(actor=request.user, person=person, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, gettext("Card %(card)s is opened.") % {"card": card})
            return redirect("patients:detail", public_id=person.public_id)
    return _person_page(request, person, card_form=form)


@require_GET
@requires(policies.can_search_people)
def card_detail(request: HttpRequest, public_id: Any) -> HttpResponse:
    """A medical card; opening it is written to the access log."""
    card = selectors.card_get_for_actor(actor=request.user, public_id=public_id, request=request)
    movable = policies.can_move_paper_card(request.user, card)
    context = {
        "card": card,
        "movable": movable,
        "issue_form": (
            PaperCardIssueForm(recipients=_issue_recipients(request.user)) if movable else None
        ),
        "movements": card.movements.select_related("to_staff", "to_room", "performed_by")[:50],
    }
    return render(request, "patients/card_detail.html", context)


def _back(request: HttpRequest, fallback: str) -> HttpResponse:
    """To the page the form was on (``next``), if it is one of this site's."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


def _error_messages(request: HttpRequest, errors: Iterable[Iterable[Any]]) -> None:
    for group in errors:
        for text in group:
            messages.error(request, text)


@require_POST
@requires(policies.can_register_patient)
def card_issue(request: HttpRequest, public_id: Any) -> HttpResponse:
    card = selectors.card_get_for_actor(actor=request.user, public_id=public_id, request=request)
    form = PaperCardIssueForm(request.POST, recipients=_issue_recipients(request.user))
    fallback = reverse("patients:detail", kwargs={"public_id": card.person.public_id})
    if not form.is_valid():
        _error_messages(request, form.errors.values())
        return _back(request, fallback)
    kind, recipient_id = form.recipient()
    to_staff = (
        staff_list(actor=request.user).get(public_id=recipient_id) if kind == "staff" else None
    )
    to_room = room_list(actor=request.user).get(public_id=recipient_id) if kind == "room" else None
    try:
        services.paper_card_issue(actor=request.user, card=card, to_staff=to_staff, to_room=to_room)
    except ValidationError as error:
        _error_messages(request, [error.messages])
    else:
        messages.success(
            request,
            gettext("The paper card %(card)s is issued to %(whom)s.")
            % {"card": card, "whom": to_staff.full_name if to_staff else to_room},
        )
    return _back(request, fallback)


@require_POST
@requires(policies.can_register_patient)
def card_return(request: HttpRequest, public_id: Any) -> HttpResponse:
    card = selectors.card_get_for_actor(actor=request.user, public_id=public_id, request=request)
    fallback = reverse("patients:detail", kwargs={"public_id": card.person.public_id})
    try:
        services.paper_card_return(actor=request.user, card=card)
    except ValidationError as error:
        _error_messages(request, [error.messages])
    else:
        messages.success(
            request, gettext("The paper card %(card)s is back in the archive.") % {"card": card}
        )
    return _back(request, fallback)


@require_GET
@requires(policies.can_register_patient)
def cards_out(request: HttpRequest) -> HttpResponse:
    """Paper cards out of the archive, the longest out first."""
    cards = list(selectors.cards_out_of_archive(actor=request.user))
    return render(request, "patients/cards_out.html", {"cards": cards, "now": timezone.now()})


# ---- duplicates and merges ------------------------------------------------------------------


@dataclass
class PairRow:
    people: list[PersonRow]
    reasons: list[str]
    form: MergeForm


@require_GET
@requires(policies.can_merge_people)
def duplicates(request: HttpRequest) -> HttpResponse:
    """Pairs of people who are probably the same, each with a merge form."""
    pairs = duplicate_pairs(actor=request.user, limit=DUPLICATE_PAIRS_LIMIT)
    rows = person_rows(person for pair in pairs for person in (pair.first, pair.second))
    context = {
        "pairs": [
            PairRow(
                people=rows[2 * index : 2 * index + 2],
                reasons=pair.reason_labels,
                form=_merge_form(pair.first, pair.second, index),
            )
            for index, pair in enumerate(pairs)
        ],
        "limit": DUPLICATE_PAIRS_LIMIT,
    }
    return render(request, "patients/duplicates.html", context)


def _merge_form(first: Person, second: Person, index: int) -> MergeForm:
    """The survivor is preselected as the one registered first (usually the one with history)."""
    older = first if (first.created_at, first.pk) <= (second.created_at, second.pk) else second
    return MergeForm(
        initial={"first": first.public_id, "second": second.public_id, "survivor": older.public_id},
        choices=[
            (str(first.public_id), f"1. {first.full_name}"),
            (str(second.public_id), f"2. {second.full_name}"),
        ],
        auto_id=f"id_merge_{index}_%s",
    )


@require_POST
@requires(policies.can_merge_people)
def merge(request: HttpRequest) -> HttpResponse:
    form = MergeForm(request.POST)
    if not form.is_valid():
        _error_messages(request, form.errors.values())
        return redirect("patients:duplicates")
    survivor = selectors.person_get_for_actor(
        actor=request.user, public_id=form.cleaned_data["survivor"]
    )
    merged = selectors.person_get_for_actor(actor=request.user, public_id=form.merged_id())
    try:
        person_merge(
            actor=request.user,
            survivor=survivor,
            merged=merged,
            reason=form.cleaned_data["reason"],
        )
    except ValidationError as error:
        _error_messages(request, [error.messages])
        return redirect("patients:duplicates")
    messages.success(
        request,
        gettext("%(merged)s is merged into %(survivor)s.")
        % {"merged": merged.full_name, "survivor": survivor.full_name},
    )
    return redirect("patients:detail", public_id=survivor.public_id)


def _tombstone_page(request: HttpRequest, person: Person) -> HttpResponse:
    can_merge = policies.can_merge_people(request.user)
    context = {
        "person": person,
        "survivor": person.merged_into,
        "merge": _active_merge(person) if can_merge else None,
        "can_merge": can_merge,
    }
    return render(request, "patients/tombstone.html", context)


def _active_merge(person: Person) -> Any:
    """The merge that made ``person`` a tombstone (the person is already authorised)."""
    return (
        person.merges_absorbed.filter(undone_at__isnull=True)
        .select_related("survivor", "performed_by")
        .first()
    )


@require_POST
@requires(policies.can_merge_people)
def unmerge(request: HttpRequest, public_id: Any) -> HttpResponse:
    person = selectors.person_get_for_actor(
        actor=request.user, public_id=public_id, include_merged=True
    )
    merge_record = _active_merge(person) if person.is_tombstone else None
    if merge_record is None:
        raise Http404
    try:
        restored = person_unmerge(actor=request.user, merge=merge_record)
    except ValidationError as error:
        _error_messages(request, [error.messages])
        return redirect("patients:detail", public_id=person.public_id)
    messages.success(
        request, gettext("%(name)s is separated again.") % {"name": restored.full_name}
    )
    return redirect("patients:detail", public_id=restored.public_id)

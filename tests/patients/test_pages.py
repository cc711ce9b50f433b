"""The desk's patient pages through the Django test client: who opens which page, search,
registration with the duplicate warning, the patient page with its cards and history, the paper
archive, and the duplicates report with merge and unmerge.

Text is asserted on pages requested in English (the ``en`` cookie): the default language is
Russian and its translations are maintained separately.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.shortcuts import assign_perm

from clinic.audit.models import AccessLog, SecurityEvent, SecurityEventKind
from clinic.core.models import Branch, Organization, Staff
from clinic.core.roles import Role
from patients import services
from patients.merge import person_merge
from patients.models import (
    CardType,
    Consent,
    ConsentKind,
    ConsentSource,
    Contact,
    ContactKind,
    MedicalCard,
    PaperLocation,
    Person,
    PersonMerge,
    PersonRelation,
    Relation,
)
from patients.services import ContactInput, PersonInput
from tests.core.factories import BranchFactory, OrganizationFactory, RoomFactory, staff_with_role
from tests.web.test_pages import assert_csp_clean, verify_second_factor

pytestmark = pytest.mark.django_db

SEARCHERS: set[str] = {
    Role.REGISTRAR,
    Role.CALL_CENTRE,
    Role.HEAD_OF_REGISTRY,
    Role.DOCTOR,
    Role.NURSE,
}
REGISTRARS: set[str] = {Role.REGISTRAR, Role.CALL_CENTRE, Role.HEAD_OF_REGISTRY}
MERGERS: set[str] = {Role.HEAD_OF_REGISTRY, Role.ADMINISTRATOR}
VALID_SNILS = "112-233-445 95"


# ---- helpers ------------------------------------------------------------------------------


class Clinic:
    """One organization with a branch, a room and the standard card types."""

    def __init__(self) -> None:
        self.organization: Organization = OrganizationFactory()
        self.branch: Branch = BranchFactory(organization=self.organization, name="Central")
        self.room = RoomFactory(branch=self.branch, number="101")
        self.outpatient = CardType.objects.get(code="outpatient", organization=None)
        self.venereology = CardType.objects.get(code="venereology", organization=None)
        self.system = staff_with_role(
            Role.HEAD_OF_REGISTRY, organization=self.organization, branches=[self.branch]
        ).user
        for card_type in (self.outpatient, self.venereology):
            assign_perm("patients.open_cardtype", self.system, card_type)

    def staff(self, role: str, *card_types: CardType, **kwargs: Any) -> Staff:
        staff = staff_with_role(
            role, organization=self.organization, branches=[self.branch], **kwargs
        )
        for card_type in card_types:
            assign_perm("patients.open_cardtype", staff.user, card_type)
        return staff

    def person(
        self, last_name: str = "Smirnova", *, duplicate: bool = False, **kwargs: Any
    ) -> Person:
        """A person registered by the head of registry; ``duplicate`` registers a likely
        duplicate on purpose (with a reason, as the desk would)."""
        phones = kwargs.pop("phones", [])
        data = PersonInput(
            last_name=last_name,
            first_name=kwargs.pop("first_name", "Olga"),
            patronymic=kwargs.pop("patronymic", "Petrovna"),
            birth_date=kwargs.pop("birth_date", datetime.date(1985, 3, 14)),
            contacts=[ContactInput(ContactKind.MOBILE, phone) for phone in phones],
            **kwargs,
        )
        return services.person_create(
            actor=self.system,
            organization=self.organization,
            data=data,
            force_reason="registered twice on purpose" if duplicate else "",
        )

    def card(self, person: Person, card_type: CardType) -> MedicalCard:
        return services.card_open(
            actor=self.system, person=person, card_type=card_type, branch=self.branch
        )


@pytest.fixture
def clinic() -> Clinic:
    return Clinic()


@pytest.fixture
def en_client(client: Client) -> Client:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    return client


def log_in(client: Client, staff: Staff) -> Staff:
    client.force_login(staff.user)
    if staff.user.groups.filter(name__in=settings.TWO_FACTOR_ROLES).exists():
        verify_second_factor(client, staff.user)
    return staff


@pytest.fixture
def as_role(clinic: Clinic, en_client: Client) -> Callable[..., Staff]:
    """Log the English client in as a new staff member of the clinic with one role."""

    def make(role: str, *card_types: CardType) -> Staff:
        return log_in(en_client, clinic.staff(role, *card_types))

    return make


def text_of(html: str, marker: str) -> list[str]:
    """The texts (tags stripped, spaces collapsed) of the elements carrying ``marker``."""
    found = []
    for match in re.finditer(rf"<(\w+)[^>]*\b{marker}\b[^>]*>(.*?)</\1>", html, re.S):
        found.append(" ".join(re.sub(r"<[^>]+>", " ", match.group(2)).split()))
    return found


def field_errors(html: str, name: str) -> list[str]:
    block = re.search(rf'data-field-errors="{name}">(.*?)</ul>', html, re.S)
    if block is None:
        return []
    return [" ".join(item.split()) for item in re.findall(r"<li>(.*?)</li>", block.group(1), re.S)]


def edit_data(client: Client, url: str) -> dict[str, Any]:
    """What the edit page's form would post unchanged."""
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["form"]
    data = {name: form[name].value() for name in form.fields}
    data["birth_date"] = data["birth_date"].isoformat() if data["birth_date"] else ""
    data["document_issued_on"] = ""
    if not data.pop("is_vip"):
        return {name: value or "" for name, value in data.items()}
    return {**{name: value or "" for name, value in data.items()}, "is_vip": "on"}


def unescape(html: str) -> str:
    from html import unescape as html_unescape

    return html_unescape(html)


# ---- who opens which page -------------------------------------------------------------------


def page_urls(clinic: Clinic) -> dict[str, tuple[str, set[str]]]:
    """Every GET page with the roles that open it."""
    person = clinic.person(phones=["+79161234567"])
    card = clinic.card(person, clinic.outpatient)
    return {
        "search": (reverse("patients:search"), SEARCHERS),
        "results": (reverse("patients:search_results") + "?q=Smirnova", SEARCHERS),
        "register": (reverse("patients:register"), REGISTRARS),
        "detail": (reverse("patients:detail", args=[person.public_id]), SEARCHERS | MERGERS),
        "edit": (reverse("patients:edit", args=[person.public_id]), REGISTRARS),
        "relation": (reverse("patients:relation_add", args=[person.public_id]), REGISTRARS),
        "card": (reverse("patients:card_detail", args=[card.public_id]), SEARCHERS),
        "cards_out": (reverse("patients:cards_out"), REGISTRARS),
        "duplicates": (reverse("patients:duplicates"), MERGERS),
    }


@pytest.mark.parametrize("role", list(Role))
def test_every_page_opens_for_its_roles_and_is_403_for_the_others(
    clinic: Clinic, en_client: Client, role: str
) -> None:
    pages = page_urls(clinic)
    staff = log_in(en_client, clinic.staff(role, clinic.outpatient))
    for name, (url, roles) in pages.items():
        response = en_client.get(url)
        expected = 200 if role in roles else 403
        assert (name, response.status_code) == (name, expected)
        assert_csp_clean(response.content)
        if expected == 403:
            assert "Access denied" in response.content.decode()
    denied = SecurityEvent.objects.filter(kind=SecurityEventKind.ACCESS_DENIED, user=staff.user)
    assert denied.count() == sum(1 for _url, roles in pages.values() if role not in roles)


def test_anonymous_user_is_sent_to_login(client: Client, clinic: Clinic) -> None:
    for url in [reverse("patients:search"), reverse("patients:register")]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={url}"


def test_people_and_cards_of_another_organization_are_404(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    other = Clinic()
    stranger = other.person("Stranger", phones=["+79035550000"])
    card = other.card(stranger, other.outpatient)
    as_role(Role.HEAD_OF_REGISTRY, clinic.outpatient)
    for url in [
        reverse("patients:detail", args=[stranger.public_id]),
        reverse("patients:edit", args=[stranger.public_id]),
        reverse("patients:relation_add", args=[stranger.public_id]),
        reverse("patients:card_detail", args=[card.public_id]),
    ]:
        assert en_client.get(url).status_code == 404, url
    for url in [
        reverse("patients:contact_add", args=[stranger.public_id]),
        reverse("patients:card_return", args=[card.public_id]),
        reverse("patients:unmerge", args=[stranger.public_id]),
    ]:
        assert en_client.post(url, {}).status_code == 404, url
    assert AccessLog.objects.count() == 0
    found = en_client.get(reverse("patients:search"), {"q": "Stranger"}).content.decode()
    assert "data-search-result=" not in found
    assert "data-no-results" in found


def test_a_doctor_cannot_register_or_change_anything(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    person = clinic.person()
    as_role(Role.DOCTOR, clinic.outpatient)
    payload = {"last_name": "Ivanov", "first_name": "Ivan", "action": "register"}
    assert en_client.post(reverse("patients:register"), payload).status_code == 403
    assert (
        en_client.post(
            reverse("patients:contact_add", args=[person.public_id]),
            {"kind": "mobile", "value": "+79035551122"},
        ).status_code
        == 403
    )
    assert (
        en_client.post(
            reverse("patients:card_open", args=[person.public_id]),
            {"card_type": clinic.outpatient.public_id, "branch": clinic.branch.public_id},
        ).status_code
        == 403
    )
    assert Person.objects.filter(last_name="Ivanov").count() == 0
    assert Contact.objects.filter(value="+79035551122").count() == 0
    assert MedicalCard.objects.count() == 0
    html = en_client.get(reverse("patients:detail", args=[person.public_id])).content.decode()
    assert "data-edit-link" not in html
    assert "data-contact-form" not in html
    assert "data-card-form" not in html


def test_desk_workplace_links_to_the_patient_pages(
    en_client: Client, as_role: Callable[..., Staff]
) -> None:
    as_role(Role.REGISTRAR)
    html = en_client.get("/desk/").content.decode()
    assert text_of(html, "data-desk-patients")[0].split(" ", 1)[0] == "Patients"
    assert 'href="/desk/patients/"' in html
    assert 'href="/desk/patients/new/"' in html
    assert 'href="/desk/patients/cards/out/"' in html
    assert 'href="/desk/patients/duplicates/"' not in html


def test_head_of_registry_also_gets_the_duplicates_link(
    en_client: Client, as_role: Callable[..., Staff]
) -> None:
    as_role(Role.HEAD_OF_REGISTRY)
    assert 'href="/desk/patients/duplicates/"' in en_client.get("/desk/").content.decode()


# ---- search -------------------------------------------------------------------------------


def test_search_page_has_one_box_that_searches_as_one_types(
    en_client: Client, as_role: Callable[..., Staff]
) -> None:
    as_role(Role.REGISTRAR)
    response = en_client.get(reverse("patients:search"))
    html = response.content.decode()
    assert html.count('name="q"') == 1
    assert 'hx-get="/desk/patients/results/"' in html
    assert 'hx-trigger="input changed delay:300ms, search"' in html
    assert 'hx-target="#search-results"' in html
    assert '<form class="search-form" method="get" action="/desk/patients/"' in html
    assert "Results appear as you type." in html
    assert 'href="/desk/patients/new/" data-register-link' in html


def test_search_results_partial_lists_name_birth_date_age_phones_and_match(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    person = clinic.person(
        "Smirnova", phones=["+79161234567"], birth_date=datetime.date(1985, 3, 14)
    )
    clinic.person("Petrov", first_name="Pavel", phones=["+79035550000"])
    as_role(Role.REGISTRAR)

    response = en_client.get(
        reverse("patients:search_results"), {"q": "Smirn"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert response.templates[0].name == "patients/_results.html"
    html = response.content.decode()
    assert "<html" not in html
    rows = re.findall(r'data-search-result="([0-9a-f-]+)"', html)
    assert rows == [str(person.public_id)]
    age = person.age_on(datetime.date.today())
    assert text_of(html, "data-search-result") == [
        f"Smirnova Olga Petrovna 14.03.1985 {age} years +79161234567 name"
    ]
    assert f'href="/desk/patients/{person.public_id}/" data-person-link' in html
    assert text_of(html, "data-result-count") == ["1 person found"]
    assert response["HX-Replace-Url"] == "/desk/patients/?q=Smirn"


def test_search_by_phone_says_it_matched_on_the_phone(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    clinic.person("Smirnova", phones=["+79161234567"])
    as_role(Role.CALL_CENTRE)
    html = en_client.get(reverse("patients:search_results"), {"q": "916 123-45-67"}).content
    assert text_of(html.decode(), "data-matched-on") == ["phone"]


def test_search_works_without_javascript(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    person = clinic.person("Smirnova")
    as_role(Role.DOCTOR)
    response = en_client.get(reverse("patients:search"), {"q": "smirnova olga"})
    html = response.content.decode()
    assert response.templates[0].name == "patients/search.html"
    assert 'value="smirnova olga"' in html
    assert re.findall(r'data-search-result="([0-9a-f-]+)"', html) == [str(person.public_id)]
    assert "data-register-link" not in html  # a doctor does not register


def test_search_with_no_match_offers_registration(
    en_client: Client, as_role: Callable[..., Staff]
) -> None:
    as_role(Role.REGISTRAR)
    html = unescape(
        en_client.get(reverse("patients:search_results"), {"q": "Nobody"}).content.decode()
    )
    assert "Nobody is found for “Nobody”." in html
    assert 'href="/desk/patients/new/"' in html


def test_search_results_cost_a_fixed_number_of_queries(
    clinic: Clinic,
    en_client: Client,
    as_role: Callable[..., Staff],
    django_assert_max_num_queries: Any,
) -> None:
    """Session, user, staff and role permissions (6), the name tiers of the search (at most 4),
    the contacts of the hits (1), the session's idle-timeout stamp (3 with its savepoint); not one
    per person."""
    as_role(Role.REGISTRAR)
    url = reverse("patients:search_results")
    clinic.person("Smirnova", first_name="Anna", phones=["+79161230000"])
    with CaptureQueriesContext(connection) as one_person:
        en_client.get(url, {"q": "Smirnova"})
    for index in range(1, 15):
        clinic.person(
            "Smirnova",
            first_name=f"Anna{index}",
            birth_date=datetime.date(1980, 1, 1) + datetime.timedelta(days=index),
            phones=[f"+7916123{index:04d}"],
        )

    with django_assert_max_num_queries(14):
        response = en_client.get(url, {"q": "Smirnova"})

    assert len(re.findall(r"data-search-result=", response.content.decode())) == 15
    with CaptureQueriesContext(connection) as fifteen_people:
        en_client.get(url, {"q": "Smirnova"})
    assert len(fifteen_people) == len(one_person)


# ---- registration -------------------------------------------------------------------------


def registration(**overrides: Any) -> dict[str, Any]:
    data = {
        "last_name": "кузнецова",
        "first_name": "мария",
        "patronymic": "ивановна",
        "birth_date": "1990-05-20",
        "sex": "",
        "phone": "8 (903) 555-12-34",
        "other_phone": "",
        "email": "Maria@Example.org",
        "snils": VALID_SNILS,
        "oms_policy": "",
        "consent_personal_data": "on",
        "consent_source": "paper",
        "action": "register",
    }
    data.update(overrides)
    return data


def test_registration_creates_the_person_with_contacts_and_consent(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    staff = as_role(Role.REGISTRAR)
    response = en_client.get(reverse("patients:register"))
    assert response.status_code == 200
    assert_csp_clean(response.content)

    response = en_client.post(reverse("patients:register"), registration())

    person = Person.objects.get(last_name="Кузнецова")
    assert response.status_code == 302
    assert response["Location"] == f"/desk/patients/{person.public_id}/"
    assert (person.first_name, person.patronymic, person.sex, person.snils) == (
        "Мария",
        "Ивановна",
        "female",
        "11223344595",
    )
    assert person.organization == clinic.organization
    assert person.birth_date == datetime.date(1990, 5, 20)
    assert sorted(person.contacts.values_list("kind", "value")) == [
        ("email", "maria@example.org"),
        ("mobile", "+79035551234"),
    ]
    consent = Consent.objects.get(person=person)
    assert (consent.kind, consent.source, consent.recorded_by) == (
        ConsentKind.PERSONAL_DATA,
        ConsentSource.PAPER,
        staff.user,
    )
    page = en_client.get(response["Location"]).content.decode()
    assert "Кузнецова Мария Ивановна is registered." in page
    assert "data-no-consent" not in page


def test_duplicate_warning_shows_the_candidates_and_creates_nothing(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    existing = clinic.person("Smirnova", phones=["+79161234567"])
    as_role(Role.REGISTRAR)
    before = Person.objects.count()

    response = en_client.post(
        reverse("patients:register"),
        registration(last_name="Smirnova", first_name="Olga", phone="8 916 123 45 67", snils=""),
    )

    assert response.status_code == 200
    assert Person.objects.count() == before
    html = unescape(response.content.decode())
    assert "This person may already be registered" in html
    assert re.findall(r'data-candidate="([0-9a-f-]+)"', html) == [str(existing.public_id)]
    assert text_of(html, "data-candidate-name") == ["Smirnova Olga Petrovna"]
    assert text_of(html, "data-candidate-phones") == ["+79161234567"]
    assert text_of(html, "data-candidate-reasons") == ["same phone"]
    assert (
        f'href="/desk/patients/{existing.public_id}/" data-open-candidate>Open this patient' in html
    )
    # A registrar may not force: no reason box, an explanation instead.
    assert "data-force-box" not in html
    assert "Your role may not register a new person when such matches are found." in html
    # What was typed is kept in the form.
    assert 'value="8 916 123 45 67"' in html
    assert_csp_clean(html)


def test_head_of_registry_creates_anyway_with_a_reason(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    existing = clinic.person("Smirnova", phones=["+79161234567"])
    as_role(Role.HEAD_OF_REGISTRY)
    typed = registration(
        last_name="Smirnova", first_name="Olga", phone="+7 916 123-45-67", snils=""
    )

    first = en_client.post(reverse("patients:register"), typed)
    html = first.content.decode()
    assert "data-force-box" in html
    assert 'name="action" value="force" data-force>Create anyway</button>' in html

    without_reason = en_client.post(reverse("patients:register"), {**typed, "action": "force"})
    assert field_errors(without_reason.content.decode(), "force_reason") == [
        "Say why this person must be registered despite the matches."
    ]
    assert Person.objects.filter(last_name="Smirnova").count() == 1

    created = en_client.post(
        reverse("patients:register"),
        {**typed, "action": "force", "force_reason": "Namesake: a different mother and daughter"},
    )

    assert created.status_code == 302
    people = Person.objects.filter(last_name="Smirnova").exclude(pk=existing.pk)
    assert people.count() == 1
    page = en_client.get(created["Location"]).content.decode()
    assert text_of(page, "data-history-note") == [
        "Registered despite possible duplicates: Namesake: a different mother and daughter"
    ]


def test_a_registrar_cannot_force_a_duplicate(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    clinic.person("Smirnova", phones=["+79161234567"])
    as_role(Role.REGISTRAR)
    response = en_client.post(
        reverse("patients:register"),
        registration(phone="+79161234567", action="force", force_reason="I am sure"),
    )
    assert response.status_code == 403
    assert Person.objects.count() == 1
    assert not Person.objects.filter(last_name="Кузнецова").exists()


@pytest.mark.parametrize(
    ("field", "typed", "message"),
    [
        (
            "snils",
            "123",
            "SNILS “123” is invalid: 11 digits with a correct check number are expected.",
        ),
        ("birth_date", "2999-01-01", "Birth date 01.01.2999 is in the future."),
        ("birth_date", "31.02.1980", "“31.02.1980” is not a date: write it as 31.12.1980."),
        ("phone", "abc", "“abc” is not a phone number."),
        ("other_phone", "+7 123", "“+7 123” is not a valid phone number."),
        ("email", "maria@", "“maria@” is not an e-mail address."),
    ],
)
def test_validation_errors_are_shown_next_to_the_field_naming_the_value(
    clinic: Clinic,
    en_client: Client,
    as_role: Callable[..., Staff],
    field: str,
    typed: str,
    message: str,
) -> None:
    as_role(Role.REGISTRAR)
    response = en_client.post(reverse("patients:register"), registration(**{field: typed}))
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert field_errors(html, field) == [message]
    assert not Person.objects.filter(last_name="Кузнецова").exists()
    assert not Consent.objects.exists()
    assert_csp_clean(html)


def test_registration_without_names_says_which_are_missing(
    en_client: Client, as_role: Callable[..., Staff]
) -> None:
    as_role(Role.CALL_CENTRE)
    response = en_client.post(
        reverse("patients:register"), registration(last_name="", first_name=" ")
    )
    html = response.content.decode()
    assert field_errors(html, "last_name") == ["This field is required."]
    assert field_errors(html, "first_name") == ["This field is required."]
    assert not Person.objects.filter(patronymic="Ивановна").exists()


# ---- the patient page -----------------------------------------------------------------------


def test_patient_page_shows_demographics_contacts_consents_relations_and_history(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    child = clinic.person(
        "Smirnov",
        first_name="Ivan",
        patronymic="Petrovich",
        birth_date=datetime.date.today().replace(year=datetime.date.today().year - 7, day=1),
        phones=[],
        snils=VALID_SNILS,
    )
    mother = clinic.person("Smirnova", phones=["+79161234567"])
    services.relation_add(
        actor=clinic.system,
        person=child,
        relative=mother,
        relation=Relation.MOTHER,
        is_legal_representative=True,
        authorising_document="Birth certificate II-МЮ 123456",
    )
    services.consent_give(
        actor=clinic.system,
        person=child,
        kind=ConsentKind.PERSONAL_DATA,
        source=ConsentSource.PAPER,
        given_on=datetime.date(2024, 1, 10),
    )
    services.person_update(actor=clinic.system, person=child, changes={"last_name": "Smirnovv"})
    staff = as_role(Role.REGISTRAR)
    url = reverse("patients:edit", args=[child.public_id])
    assert (
        en_client.post(url, {**edit_data(en_client, url), "last_name": "Smirnov"}).status_code
        == 302
    )

    response = en_client.get(reverse("patients:detail", args=[child.public_id]))

    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert text_of(html, "data-person-name") == ["Smirnov Ivan Petrovich"]
    assert text_of(html, "data-minor") == ["Minor"]
    assert text_of(html, "data-snils") == ["11223344595"]
    assert "data-no-consent" not in html
    assert text_of(html, "data-consent-state") == ["Active"]
    assert text_of(html, "data-relation") == [
        "Smirnova Olga Petrovna Mother Legal representative Birth certificate II-МЮ 123456 —"
    ]
    assert "data-minor-notice" not in html
    # Newest first: the registrar's change (made through the page), the one made outside any
    # request (by "system"), the registration.
    history = [re.sub(r"^\S+ \S+ ", "", row) for row in text_of(html, "data-history-row")]
    assert history == [
        f"{staff.short_name} Changed last name : Smirnovv → Smirnov",
        "system Changed last name : Smirnov → Smirnovv",
        "system Created",
    ]
    assert_csp_clean(html)


def test_minor_without_a_representative_is_pointed_out(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    child = clinic.person(
        "Smirnov", birth_date=datetime.date.today() - datetime.timedelta(days=400)
    )
    as_role(Role.REGISTRAR)
    html = en_client.get(reverse("patients:detail", args=[child.public_id])).content.decode()
    assert text_of(html, "data-minor-notice") == [
        "The patient is a minor: record the parent or another legal representative."
    ]
    assert text_of(html, "data-no-consent") == ["No consent to personal data processing"]


def test_patient_page_hides_cards_of_types_the_doctor_is_not_granted(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    person = clinic.person()
    outpatient = clinic.card(person, clinic.outpatient)
    venereology = clinic.card(person, clinic.venereology)
    doctor = as_role(Role.DOCTOR, clinic.outpatient)
    url = reverse("patients:detail", args=[person.public_id])

    html = en_client.get(url).content.decode()
    assert re.findall(r'data-card="(\w+)"', html) == ["outpatient"]
    assert str(outpatient.public_id) in html
    assert str(venereology.public_id) not in html
    assert clinic.venereology.name not in html
    assert (
        en_client.get(reverse("patients:card_detail", args=[venereology.public_id])).status_code
        == 404
    )

    assign_perm("patients.open_cardtype", doctor.user, clinic.venereology)
    html = en_client.get(url).content.decode()
    assert sorted(re.findall(r'data-card="(\w+)"', html)) == ["outpatient", "venereology"]
    assert clinic.venereology.name in html
    # A doctor reads cards but does not move paper ones.
    assert "data-issue-form" not in html and "data-return-form" not in html


def test_card_detail_is_written_to_the_access_log(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    person = clinic.person()
    card = clinic.card(person, clinic.outpatient)
    doctor = as_role(Role.DOCTOR, clinic.outpatient)

    response = en_client.get(reverse("patients:card_detail", args=[card.public_id]))

    assert response.status_code == 200
    assert text_of(response.content.decode(), "data-card-title") == [
        f"{clinic.outpatient.name} №{card.number}"
    ]
    assert list(
        AccessLog.objects.values_list("user", "object_type", "object_id", "purpose", "path")
    ) == [
        (
            doctor.user.pk,
            "patients.MedicalCard",
            str(card.public_id),
            "open card",
            f"/desk/patients/cards/{card.public_id}/",
        )
    ]
    assert_csp_clean(response.content)


def test_patient_page_costs_a_fixed_number_of_queries(
    clinic: Clinic,
    en_client: Client,
    as_role: Callable[..., Staff],
    django_assert_max_num_queries: Any,
) -> None:
    person = clinic.person(phones=["+79161234567", "+79031234567"])
    for index in range(4):
        relative = clinic.person(
            f"Relative{index}", birth_date=datetime.date(1960 + index, 1, 1), phones=[]
        )
        services.relation_add(
            actor=clinic.system, person=person, relative=relative, relation=Relation.RELATIVE
        )
        services.consent_give(
            actor=clinic.system,
            person=person,
            kind=ConsentKind.COMMUNICATION,
            channel=["sms", "email", "whatsapp", "call"][index],
            source=ConsentSource.PAPER,
            given_on=datetime.date(2024, 1, 1 + index),
        )
        clinic.card(person, clinic.outpatient)
        services.person_update(
            actor=clinic.system, person=person, changes={"notes": f"note {index}"}
        )
    clinic.card(person, clinic.venereology)
    services.paper_card_issue(
        actor=clinic.system,
        card=MedicalCard.objects.filter(person=person).first(),
        to_room=clinic.room,
    )
    as_role(Role.REGISTRAR, clinic.outpatient, clinic.venereology)
    url = reverse("patients:detail", args=[person.public_id])

    # Fixed: session and user (6), the person and its details (8), the history (1), the policy
    # per card type (2 each), whom paper cards go to (3), the open-card form (5), session (3).
    with django_assert_max_num_queries(32):
        response = en_client.get(url)

    html = response.content.decode()
    assert len(re.findall(r"data-card=", html)) == 5
    assert len(re.findall(r"data-relation=", html)) == 4
    assert len(re.findall(r"data-history-row", html)) == 5
    assert html.count("data-issue-form") == 4 and html.count("data-return-form") == 1


# ---- editing, contacts, consents, relations -------------------------------------------------


def test_edit_changes_only_what_was_changed(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    person = clinic.person(snils=VALID_SNILS)
    as_role(Role.REGISTRAR)
    url = reverse("patients:edit", args=[person.public_id])
    data = {**edit_data(en_client, url), "notes": "Prefers mornings"}

    response = en_client.post(url, data)

    assert response.status_code == 302
    person.refresh_from_db()
    assert person.notes == "Prefers mornings"
    assert person.snils == "11223344595"
    html = en_client.get(response["Location"]).content.decode()
    assert "Changed notes : — → Prefers mornings" in text_of(html, "data-history-row")[0]


def test_edit_shows_the_services_errors_next_to_the_field(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    person = clinic.person()
    as_role(Role.REGISTRAR)
    url = reverse("patients:edit", args=[person.public_id])
    response = en_client.post(
        url, {"last_name": "Smirnova", "first_name": "Olga", "sex": "female", "snils": "123-45"}
    )
    assert response.status_code == 200
    assert field_errors(unescape(response.content.decode()), "snils") == [
        "SNILS “123-45” is invalid: 11 digits with a correct check number are expected."
    ]
    person.refresh_from_db()
    assert person.snils == ""


def test_contact_add_and_its_error(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    person = clinic.person()
    as_role(Role.REGISTRAR)
    url = reverse("patients:contact_add", args=[person.public_id])

    bad = en_client.post(url, {"kind": "mobile", "value": "12ab"})
    assert bad.status_code == 200
    assert field_errors(unescape(bad.content.decode()), "value") == [
        "“12ab” is not a phone number."
    ]
    good = en_client.post(url, {"kind": "mobile", "value": "8 916 000 11 22"})
    assert good.status_code == 302
    assert list(person.contacts.values_list("value", flat=True)) == ["+79160001122"]


def test_consent_give_and_revoke(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    person = clinic.person()
    staff = as_role(Role.REGISTRAR)
    given = en_client.post(
        reverse("patients:consent_give", args=[person.public_id]),
        {"kind": "communication", "channel": "", "source": "verbal", "given_on": "2025-02-01"},
    )
    assert field_errors(given.content.decode(), "channel") == [
        "Say which channel the consent is for."
    ]
    assert not Consent.objects.exists()

    en_client.post(
        reverse("patients:consent_give", args=[person.public_id]),
        {"kind": "communication", "channel": "sms", "source": "verbal", "given_on": "2025-02-01"},
    )
    consent = Consent.objects.get(person=person)
    assert (consent.channel, consent.recorded_by) == ("sms", staff.user)

    response = en_client.post(
        reverse("patients:consent_revoke", args=[person.public_id, consent.public_id]),
        {"revoked_on": "2025-03-01", "source": "paper"},
    )
    assert response.status_code == 302
    consent.refresh_from_db()
    assert (consent.revoked_on, consent.revocation_source, consent.revoked_by) == (
        datetime.date(2025, 3, 1),
        "paper",
        staff.user,
    )
    html = en_client.get(response["Location"]).content.decode()
    assert text_of(html, "data-consent-state") == ["Revoked on 01.03.2025"]
    assert "data-revoke-form" not in html


def test_relation_is_added_from_the_search_results(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    child = clinic.person("Smirnov", first_name="Ivan", patronymic="Petrovich")
    mother = clinic.person(
        "Smirnova", birth_date=datetime.date(1960, 1, 1), phones=["+79161234567"]
    )
    as_role(Role.REGISTRAR)
    url = reverse("patients:relation_add", args=[child.public_id])

    found = en_client.get(url, {"q": "+7 916 123 45 67"}).content.decode()
    assert f'value="{mother.public_id}"' in found

    missing_document = en_client.post(
        url,
        {
            "q": "+79161234567",
            "relative": mother.public_id,
            "relation": "mother",
            "is_legal_representative": "on",
        },
    )
    assert field_errors(missing_document.content.decode(), "authorising_document") == [
        "Name the document that authorises the representative."
    ]
    response = en_client.post(
        url,
        {
            "q": "+79161234567",
            "relative": mother.public_id,
            "relation": "mother",
            "is_legal_representative": "on",
            "authorising_document": "Birth certificate",
        },
    )
    assert response.status_code == 302
    link = PersonRelation.objects.get(person=child)
    assert (link.relative, link.relation, link.is_legal_representative) == (mother, "mother", True)


# ---- cards and the paper archive --------------------------------------------------------------


def test_open_card_offers_only_granted_types_and_own_branches(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    person = clinic.person()
    BranchFactory(organization=clinic.organization, name="Not mine")
    as_role(Role.REGISTRAR, clinic.outpatient)
    html = en_client.get(reverse("patients:detail", args=[person.public_id])).content.decode()
    form = re.search(r"data-card-form>(.*?)</form>", html, re.S).group(1)
    assert re.findall(r'<option value="[^"]+"[^>]*>([^<]+)</option>', form) == [
        clinic.outpatient.name,
        "Central",
    ]

    refused = en_client.post(
        reverse("patients:card_open", args=[person.public_id]),
        {"card_type": clinic.venereology.public_id, "branch": clinic.branch.public_id},
    )
    assert refused.status_code == 200
    assert field_errors(refused.content.decode(), "card_type") == [
        "Select a valid choice. That choice is not one of the available choices."
    ]
    opened = en_client.post(
        reverse("patients:card_open", args=[person.public_id]),
        {"card_type": clinic.outpatient.public_id, "branch": clinic.branch.public_id},
    )
    assert opened.status_code == 302
    card = MedicalCard.objects.get(person=person)
    assert (card.card_type, card.branch, card.number) == (clinic.outpatient, clinic.branch, "А1")


def test_paper_card_issue_return_and_the_out_of_archive_list(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    person = clinic.person()
    card = clinic.card(person, clinic.outpatient)
    as_role(Role.REGISTRAR, clinic.outpatient)
    out_url = reverse("patients:cards_out")
    assert text_of(en_client.get(out_url).content.decode(), "data-archive-complete") == [
        "Every paper card is in the archive."
    ]

    issued = en_client.post(
        reverse("patients:card_issue", args=[card.public_id]),
        {"to": f"room:{clinic.room.public_id}", "next": out_url},
    )
    assert issued.status_code == 302 and issued["Location"] == out_url
    card.refresh_from_db()
    assert (card.paper_location, card.issued_to_room) == (PaperLocation.ISSUED, clinic.room)

    html = en_client.get(out_url).content.decode()
    assert re.findall(r'data-card-out="([0-9a-f-]+)"', html) == [str(card.public_id)]
    assert "Smirnova Olga Petrovna" in html
    assert_csp_clean(html)

    returned = en_client.post(
        reverse("patients:card_return", args=[card.public_id]),
        {"next": "https://evil.example/"},
    )
    assert returned["Location"] == f"/desk/patients/{person.public_id}/"
    card.refresh_from_db()
    assert card.paper_location == PaperLocation.ARCHIVE
    again = en_client.post(reverse("patients:card_return", args=[card.public_id]), follow=True)
    assert "The card is in the archive already." in again.content.decode()


# ---- duplicates, merge and unmerge ----------------------------------------------------------


def test_duplicates_report_merge_and_unmerge(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    first = clinic.person("Smirnova", phones=["+79161234567"])
    second = clinic.person("Smyrnova", phones=["+79161234567"], duplicate=True)
    as_role(Role.HEAD_OF_REGISTRY)

    html = en_client.get(reverse("patients:duplicates")).content.decode()
    assert text_of(html, "data-pair-reasons") == ["same phone similar name, same birth date"]
    assert re.findall(r'data-pair-person="([0-9a-f-]+)"', html) == [
        str(first.public_id),
        str(second.public_id),
    ]
    assert_csp_clean(html)

    no_reason = en_client.post(
        reverse("patients:merge"),
        {"first": first.public_id, "second": second.public_id, "survivor": first.public_id},
    )
    assert no_reason.status_code == 302
    assert not PersonMerge.objects.exists()

    merged = en_client.post(
        reverse("patients:merge"),
        {
            "first": first.public_id,
            "second": second.public_id,
            "survivor": first.public_id,
            "reason": "Typo in the surname",
        },
    )
    assert merged["Location"] == f"/desk/patients/{first.public_id}/"
    second.refresh_from_db()
    assert second.merged_into == first

    tombstone = en_client.get(reverse("patients:detail", args=[second.public_id]))
    page = tombstone.content.decode()
    assert tombstone.templates[0].name == "patients/tombstone.html"
    assert f'href="/desk/patients/{first.public_id}/" data-survivor-link' in page
    assert "data-unmerge-form" in page
    assert_csp_clean(page)

    unmerged = en_client.post(reverse("patients:unmerge", args=[second.public_id]))
    assert unmerged["Location"] == f"/desk/patients/{second.public_id}/"
    second.refresh_from_db()
    assert second.merged_into is None
    assert PersonMerge.objects.get().undone_at is not None
    assert en_client.post(reverse("patients:unmerge", args=[second.public_id])).status_code == 404


def test_a_registrar_cannot_merge_or_unmerge(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    first = clinic.person("Smirnova", phones=["+79161234567"])
    second = clinic.person("Smyrnova", phones=["+79161234567"], duplicate=True)
    as_role(Role.REGISTRAR)
    response = en_client.post(
        reverse("patients:merge"),
        {
            "first": first.public_id,
            "second": second.public_id,
            "survivor": first.public_id,
            "reason": "same",
        },
    )
    assert response.status_code == 403
    assert not PersonMerge.objects.exists()

    person_merge(actor=clinic.system, survivor=first, merged=second, reason="same")
    tombstone = en_client.get(reverse("patients:detail", args=[second.public_id])).content.decode()
    assert "data-unmerge-form" not in tombstone
    assert en_client.post(reverse("patients:unmerge", args=[second.public_id])).status_code == 403
    second.refresh_from_db()
    assert second.merged_into == first


def test_administrator_can_merge_without_registering(
    clinic: Clinic, en_client: Client, as_role: Callable[..., Staff]
) -> None:
    first = clinic.person("Smirnova", phones=["+79161234567"])
    second = clinic.person("Smyrnova", phones=["+79161234567"], duplicate=True)
    as_role(Role.ADMINISTRATOR)
    assert en_client.get(reverse("patients:duplicates")).status_code == 200
    en_client.post(
        reverse("patients:merge"),
        {
            "first": first.public_id,
            "second": second.public_id,
            "survivor": second.public_id,
            "reason": "same person",
        },
    )
    first.refresh_from_db()
    assert first.merged_into == second
    page = en_client.get(reverse("patients:detail", args=[first.public_id])).content.decode()
    assert "data-unmerge-form" in page

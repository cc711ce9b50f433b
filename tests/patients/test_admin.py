"""The patient registry in the admin: every model's pages, who may change what, and the
"Import patients" page end to end."""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections.abc import Iterator
from functools import reduce
from typing import Any

import openpyxl
import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation
from guardian.shortcuts import assign_perm

from clinic.accounts.models import User
from clinic.audit.models import AccessLog
from clinic.audit.selectors import history_for_object
from clinic.core.roles import Role
from patients.importing import DEFAULT_MAPPING
from patients.models import (
    CardNumberSequence,
    Consent,
    ConsentKind,
    ConsentSource,
    Contact,
    ImportOutcome,
    ImportRow,
    ImportRun,
    ImportStatus,
    MedicalCard,
    PaperCardMovement,
    Person,
    PersonMerge,
    PersonRelation,
    Relation,
    Sex,
)

from ..admin_site.conftest import login_verified, staff_login
from ..core.factories import BranchFactory, OrganizationFactory, UserFactory
from .factories import CardTypeFactory, ContactFactory, MedicalCardFactory, PersonFactory

pytestmark = pytest.mark.django_db

PATIENT_MODELS = {
    "patients.person",
    "patients.contact",
    "patients.consent",
    "patients.personrelation",
    "patients.cardtype",
    "patients.cardnumbersequence",
    "patients.medicalcard",
    "patients.papercardmovement",
    "patients.personmerge",
    "patients.importrun",
    "patients.importrow",
}


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


@pytest.fixture
def superuser() -> User:
    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def admin_client(client: Client, superuser: User) -> Client:
    """A superuser who has passed the second factor, with English pages."""
    client.cookies["django_language"] = "en"
    return login_verified(client, superuser)


@pytest.fixture
def rows(superuser: User) -> dict[type[models.Model], models.Model]:
    """One row of every patients model, keyed by model."""
    organization = OrganizationFactory(short_name="Zdorovye")
    branch = BranchFactory(organization=organization, name="Central")
    person = PersonFactory(
        organization=organization,
        last_name="Смирнова",
        first_name="Ольга",
        snils="11223344595",
        oms_policy="7751234567890123",
    )
    relative = PersonFactory(
        organization=organization,
        last_name="Смирнов",
        first_name="Пётр",
        patronymic="Ильич",
        sex=Sex.MALE,
    )
    merged = PersonFactory(organization=organization, last_name="Смирнова", merged_into=person)
    card_type = CardTypeFactory(organization=organization, code="dental-x", name="Dental X")
    card = MedicalCardFactory(person=person, card_type=card_type, branch=branch, number="С15")
    run = ImportRun.objects.create(
        organization=organization,
        file_name="people.csv",
        file_checksum="ab" * 32,
        status=ImportStatus.COMPLETED,
        rows_total=1,
        rows_done=1,
        created_count=1,
        started_by=superuser,
    )
    created: list[models.Model] = [
        person,
        ContactFactory(person=person, value="+79161234567"),
        Consent.objects.create(
            person=person,
            kind=ConsentKind.PERSONAL_DATA,
            source=ConsentSource.PAPER,
            given_on=datetime.date(2024, 1, 10),
            document_title="Consent form 1",
        ),
        PersonRelation.objects.create(person=person, relative=relative, relation=Relation.FATHER),
        card_type,
        CardNumberSequence.objects.create(
            organization=organization, card_type=card_type, next_value=16
        ),
        card,
        PaperCardMovement.objects.create(
            card=card, action=PaperCardMovement.Action.RETURNED, performed_by=superuser
        ),
        PersonMerge.objects.create(
            survivor=person, merged=merged, reason="the same passport", performed_by=superuser
        ),
        run,
        ImportRow.objects.create(
            run=run, row_number=2, outcome=ImportOutcome.CREATED, person=person
        ),
    ]
    return {type(row): row for row in created}


def patient_admins() -> list[tuple[type[models.Model], admin.ModelAdmin[Any]]]:
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label == "patients"
    ]


def admin_url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def search_term(model_admin: admin.ModelAdmin[Any], row: models.Model) -> str:
    path = model_admin.search_fields[0].lstrip("^=@")
    return str(reduce(getattr, path.split("__"), row))


# Every model's pages ---------------------------------------------------------------------------


def test_every_patients_model_is_in_the_admin() -> None:
    assert {model._meta.label_lower for model, _admin in patient_admins()} == PATIENT_MODELS


def test_changelist_and_change_page_of_every_model_render(
    admin_client: Client, rows: dict[type[models.Model], models.Model]
) -> None:
    for model, _model_admin in patient_admins():
        row = rows[model]
        response = admin_client.get(admin_url(model, "changelist"))
        assert response.status_code == 200, model
        assert row in list(response.context["cl"].result_list), model
        response = admin_client.get(admin_url(model, "change", row.pk))
        assert response.status_code == 200, model
        assert response.context["original"] == row


def test_search_finds_the_row_and_nothing_for_an_unknown_term(
    admin_client: Client, rows: dict[type[models.Model], models.Model]
) -> None:
    for model, model_admin in patient_admins():
        row = rows[model]
        response = admin_client.get(
            admin_url(model, "changelist"), {"q": search_term(model_admin, row)}
        )
        assert row in list(response.context["cl"].result_list), model
        response = admin_client.get(admin_url(model, "changelist"), {"q": "no-such-thing-xyzzy"})
        assert list(response.context["cl"].result_list) == [], model


def test_every_filter_of_every_changelist_applies(
    admin_client: Client, rows: dict[type[models.Model], models.Model]
) -> None:
    for model, model_admin in patient_admins():
        assert model_admin.list_filter, model
        url = admin_url(model, "changelist")
        changelist = admin_client.get(url).context["cl"]
        kept = False
        for spec in changelist.filter_specs:
            for choice in [c for c in spec.choices(changelist) if not c["selected"]][:4]:
                response = admin_client.get(url + choice["query_string"])
                assert response.status_code == 200, (model, spec.title, choice)
                kept = kept or rows[model] in list(response.context["cl"].result_list)
        assert kept, model


def test_only_card_types_are_added_in_the_admin(
    admin_client: Client, rows: dict[type[models.Model], models.Model]
) -> None:
    addable = {
        model._meta.label_lower
        for model, _model_admin in patient_admins()
        if admin_client.get(admin_url(model, "add")).status_code == 200
    }
    assert addable == {"patients.cardtype"}


def test_person_changelist_costs_the_same_queries_for_more_people(
    admin_client: Client, rows: dict[type[models.Model], models.Model]
) -> None:
    url = admin_url(Person, "changelist")
    admin_client.get(url)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(url)
    organization = rows[Person].organization
    for index in range(20):
        PersonFactory(organization=organization, merged_into=rows[Person] if index % 2 else None)
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)
    assert len(response.context["cl"].result_list) == 23
    assert len(many) == len(few)


# Changing through the admin --------------------------------------------------------------------


def change_form_data(response: Any) -> dict[str, Any]:
    """The POST data of a rendered change form: its fields' values and every inline formset."""
    data: dict[str, Any] = {}
    form = response.context["adminform"].form
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = field.widget.format_value(value) if hasattr(value, "isoformat") else value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name in formset.management_form.fields:
            data[f"{formset.prefix}-{name}"] = formset.management_form[name].value()
        for inline_form in formset.forms:
            for name in inline_form.fields:
                value = inline_form[name].value()
                if value is not None:
                    data[inline_form.add_prefix(name)] = value
    return data


def test_a_superuser_changes_a_person_through_the_registry_service(
    admin_client: Client, rows: dict[type[models.Model], models.Model], superuser: User
) -> None:
    person = rows[Person]
    url = admin_url(Person, "change", person.pk)
    data = change_form_data(admin_client.get(url))
    data.update(first_name="  анна  ", snils="112-233-445 95")
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    person.refresh_from_db()
    assert (person.first_name, person.snils, person.name_key) == (
        "Анна",
        "11223344595",
        "смирнова анна петровна",
    )
    update = list(history_for_object(person))[-1]
    assert update.pgh_label == "update"
    assert update.user == superuser
    assert update.pgh_diff["first_name"] == ["Ольга", "Анна"]


def test_an_administrator_sees_people_but_cannot_change_them(
    client: Client, rows: dict[type[models.Model], models.Model]
) -> None:
    _staff, user = staff_login(Role.ADMINISTRATOR)
    login_verified(client, user)
    person = rows[Person]
    url = admin_url(Person, "change", person.pk)
    response = client.get(url)
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert client.post(url, {"first_name": "Мария"}).status_code == 403
    person.refresh_from_db()
    assert person.first_name == "Ольга"
    for model in (Contact, Consent, PersonMerge, ImportRun, ImportRow):
        response = client.get(admin_url(model, "change", rows[model].pk))
        assert response.status_code == 200, model
        assert response.context["has_change_permission"] is False, model
    assert client.get(admin_url(Person, "delete", person.pk)).status_code == 403


def test_administrators_see_only_cards_of_the_types_they_were_granted(
    client: Client, rows: dict[type[models.Model], models.Model]
) -> None:
    card = rows[MedicalCard]
    _staff, user = staff_login(Role.ADMINISTRATOR)
    login_verified(client, user)
    person_page = client.get(admin_url(Person, "change", rows[Person].pk))
    cards_inline = next(
        inline
        for inline in person_page.context["inline_admin_formsets"]
        if inline.formset.model is MedicalCard
    )
    assert list(cards_inline.formset.queryset) == []
    assert list(client.get(admin_url(MedicalCard, "changelist")).context["cl"].result_list) == []
    assert client.get(admin_url(MedicalCard, "change", card.pk)).status_code == 302
    movements = client.get(admin_url(PaperCardMovement, "changelist")).context["cl"]
    assert list(movements.result_list) == []

    assign_perm("patients.open_cardtype", user, card.card_type)
    assert list(client.get(admin_url(MedicalCard, "changelist")).context["cl"].result_list) == [
        card
    ]
    assert AccessLog.objects.count() == 0


def test_opening_a_card_in_the_admin_is_written_to_the_access_log(
    admin_client: Client, rows: dict[type[models.Model], models.Model], superuser: User
) -> None:
    card = rows[MedicalCard]
    admin_client.get(admin_url(MedicalCard, "change", card.pk))
    log = AccessLog.objects.get()
    assert (log.user, log.object_type, log.object_id, log.purpose) == (
        superuser,
        "patients.MedicalCard",
        str(card.public_id),
        "admin",
    )


# The import page -------------------------------------------------------------------------------

IMPORT_URL = "admin:patients_importrun_import"


def csv_upload(rows: list[dict[str, str]], name: str = "people.csv") -> SimpleUploadedFile:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(DEFAULT_MAPPING.values()), delimiter=";")
    writer.writeheader()
    for row in rows:
        writer.writerow({DEFAULT_MAPPING[field]: value for field, value in row.items()})
    return SimpleUploadedFile(name, text.getvalue().encode("utf-8"), content_type="text/csv")


PEOPLE = [
    {
        "last_name": "ОРЛОВ",
        "first_name": "олег",
        "birth_date": "01.01.1980",
        "phone": "89161110000",
    },
    {"last_name": "Орлов", "first_name": "Олег", "birth_date": "1980-01-01", "email": "o@x.org"},
    {"last_name": "Белова", "first_name": "Ирина", "birth_date": "31.02.1980"},
]


def test_import_page_offers_the_default_mapping(admin_client: Client) -> None:
    organization = OrganizationFactory()
    response = admin_client.get(reverse(IMPORT_URL))
    assert response.status_code == 200
    form = response.context["form"]
    assert json.loads(form["mapping"].value()) == DEFAULT_MAPPING
    assert list(form.fields["organization"].queryset) == [organization]
    assert form["organization"].value() == organization.pk
    changelist = admin_client.get(admin_url(ImportRun, "changelist"))
    assert reverse(IMPORT_URL) in changelist.content.decode()


def test_importing_a_file_shows_the_report(admin_client: Client, superuser: User) -> None:
    organization = OrganizationFactory()
    BranchFactory(organization=organization)
    response = admin_client.post(
        reverse(IMPORT_URL),
        {
            "organization": organization.pk,
            "file": csv_upload(PEOPLE),
            "mapping": json.dumps(DEFAULT_MAPPING, ensure_ascii=False),
        },
    )
    run = ImportRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == admin_url(ImportRun, "change", run.pk)
    assert (run.file_name, run.started_by, run.dry_run) == ("people.csv", superuser, False)
    assert (run.created_count, run.merged_count, run.rejected_count) == (1, 1, 1)
    person = Person.objects.get()
    assert person.full_name == "Орлов Олег"
    assert person.created_by == superuser

    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    assert [str(message) for message in page.context["messages"]] == [
        "people.csv: 3 rows; created 1, matched 0, merged 1, rejected 1."
    ]
    content = page.content.decode()
    assert "birth_date: “31.02.1980” is not a date: write it as 31.12.1980." in content
    [inline] = page.context["inline_admin_formsets"]
    shown = [(form.instance.row_number, form.instance.outcome) for form in inline.formset.forms]
    assert shown == [(4, "rejected"), (2, "created"), (3, "merged")]
    report = admin_client.get(
        admin_url(ImportRow, "changelist"), {"run__id__exact": run.pk, "outcome__exact": "rejected"}
    )
    assert [row.row_number for row in report.context["cl"].result_list] == [4]


def test_the_report_page_shows_a_limited_number_of_rows_in_fixed_queries(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    organization = OrganizationFactory()
    run = ImportRun.objects.create(
        organization=organization, file_name="big.csv", file_checksum="cd" * 32
    )
    people = [PersonFactory(organization=organization) for _ in range(5)]
    ImportRow.objects.bulk_create(
        ImportRow(run=run, row_number=number, outcome="created", person=people[number % 5])
        for number in range(2, 302)
    )
    url = admin_url(ImportRun, "change", run.pk)
    admin_client.get(url)
    with django_assert_max_num_queries(10):
        response = admin_client.get(url)
    [inline] = response.context["inline_admin_formsets"]
    assert len(inline.formset.forms) == 100


def test_a_dry_run_from_the_admin_changes_nothing(admin_client: Client) -> None:
    organization = OrganizationFactory()
    response = admin_client.post(
        reverse(IMPORT_URL),
        {
            "organization": organization.pk,
            "file": csv_upload(PEOPLE),
            "mapping": json.dumps(DEFAULT_MAPPING),
            "dry_run": "on",
        },
        follow=True,
    )
    run = ImportRun.objects.get()
    assert run.dry_run is True
    assert (run.created_count, run.merged_count, run.rejected_count) == (1, 1, 1)
    assert Person.objects.count() == 0
    assert "Dry run: nothing was written to the registry." in response.content.decode()


def test_an_xlsx_file_imports_too(admin_client: Client) -> None:
    organization = OrganizationFactory()
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Фамилия", "Имя", "Дата рождения"])
    sheet.append(["Ким", "Ли", datetime.datetime(1990, 5, 4)])
    content = io.BytesIO()
    workbook.save(content)
    upload = SimpleUploadedFile("people.xlsx", content.getvalue())
    mapping = {"last_name": "Фамилия", "first_name": "Имя", "birth_date": "Дата рождения"}
    response = admin_client.post(
        reverse(IMPORT_URL),
        {"organization": organization.pk, "file": upload, "mapping": json.dumps(mapping)},
    )
    assert response.status_code == 302
    assert Person.objects.get().birth_date == datetime.date(1990, 5, 4)


@pytest.mark.parametrize(
    ("mapping", "upload_name", "field", "error"),
    [
        ('{"last_name": "Фамилия"', "people.csv", "mapping", "The mapping is not valid JSON"),
        ('{"first_name": "Имя"}', "people.csv", "mapping", "name the column of the field"),
        (
            '{"last_name": "Фамилия", "first_name": "Имя", "snils": "SNILS"}',
            "people.csv",
            None,
            "The file has no column “SNILS”",
        ),
        (json.dumps(DEFAULT_MAPPING), "people.pdf", "file", "Upload a .csv or .xlsx file."),
    ],
)
def test_import_page_shows_what_is_wrong(
    admin_client: Client, mapping: str, upload_name: str, field: str | None, error: str
) -> None:
    organization = OrganizationFactory()
    response = admin_client.post(
        reverse(IMPORT_URL),
        {
            "organization": organization.pk,
            "file": csv_upload(PEOPLE, upload_name),
            "mapping": mapping,
        },
    )
    assert response.status_code == 200
    errors = response.context["form"].errors.get(field or "__all__")
    assert errors and error in errors[0]
    assert ImportRun.objects.count() == 0


def test_administrators_import_only_into_their_organization(client: Client) -> None:
    staff, user = staff_login(Role.ADMINISTRATOR)
    OrganizationFactory()
    login_verified(client, user)
    response = client.get(reverse(IMPORT_URL))
    assert list(response.context["form"].fields["organization"].queryset) == [staff.organization]
    other = OrganizationFactory()
    response = client.post(
        reverse(IMPORT_URL),
        {
            "organization": other.pk,
            "file": csv_upload(PEOPLE),
            "mapping": json.dumps(DEFAULT_MAPPING),
        },
    )
    assert "organization" in response.context["form"].errors
    assert ImportRun.objects.count() == 0


def test_roles_without_the_admin_cannot_reach_the_import_page(client: Client) -> None:
    _staff, user = staff_login(Role.HEAD_OF_REGISTRY)
    login_verified(client, user)
    response = client.get(reverse(IMPORT_URL))
    assert response.status_code in (302, 403)
    assert ImportRun.objects.count() == 0


def test_card_type_grants_are_managed_on_the_card_type_page(
    admin_client: Client, rows: dict[type[models.Model], models.Model]
) -> None:
    """Granting and withdrawing the per-type permission goes through the registry service."""
    from guardian.shortcuts import assign_perm

    from clinic.core.roles import Role
    from patients.models import CardType
    from patients.selectors import card_type_granted_staff
    from tests.core.factories import staff_with_role

    card_type = CardType.objects.get(code="venereology", organization=None)
    granted, withdrawn = staff_with_role(Role.DOCTOR), staff_with_role(Role.DOCTOR)
    assign_perm("patients.open_cardtype", withdrawn.user, card_type)
    url = admin_url(CardType, "change", card_type.pk)
    data = change_form_data(admin_client.get(url))
    assert data["granted_staff"] == [withdrawn.pk]
    data["granted_staff"] = [granted.pk]
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(card_type_granted_staff(card_type)) == [granted]
    assert granted.user.has_perm("patients.open_cardtype", card_type)

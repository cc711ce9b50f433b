"""/api/v1/patients/: the registry for other systems and the portal, scoped by the policies."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.shortcuts import get_object_or_404
from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinic.core.models import Branch, Room, Staff
from clinic.core.selectors import branch_list, room_list, staff_for_user, staff_list

from . import policies, selectors, services
from .models import (
    CardType,
    Channel,
    Consent,
    ConsentSource,
    Contact,
    ContactKind,
    MedicalCard,
    Person,
    Sex,
)
from .services import ContactInput, DuplicatePersonError, PersonInput


class ContactSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    kind = serializers.ChoiceField(choices=ContactKind.choices)

    class Meta:
        model = Contact
        fields = ["id", "kind", "value", "note"]


class ConsentSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)

    class Meta:
        model = Consent
        fields = [
            "id",
            "kind",
            "channel",
            "document_title",
            "given_on",
            "source",
            "revoked_on",
            "revocation_source",
        ]
        read_only_fields = ["revoked_on", "revocation_source"]


class CardSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    card_type = serializers.CharField(source="card_type.code", read_only=True)
    card_type_name = serializers.CharField(source="card_type.name", read_only=True)
    branch = serializers.UUIDField(source="branch.public_id", read_only=True)
    patient = serializers.UUIDField(source="person.public_id", read_only=True)

    class Meta:
        model = MedicalCard
        fields = [
            "id",
            "patient",
            "card_type",
            "card_type_name",
            "number",
            "branch",
            "opened_on",
            "closed_on",
            "status",
            "paper_location",
            "issued_at",
        ]


class PersonSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    full_name = serializers.CharField(read_only=True)
    is_minor = serializers.BooleanField(read_only=True)
    contacts = ContactSerializer(many=True, read_only=True)

    class Meta:
        model = Person
        fields = [
            "id",
            "full_name",
            "last_name",
            "first_name",
            "patronymic",
            "birth_date",
            "sex",
            "snils",
            "oms_policy",
            "document_type",
            "document_series",
            "document_number",
            "document_issued_by",
            "document_issued_on",
            "registration_address",
            "actual_address",
            "preferred_channel",
            "notes",
            "is_vip",
            "is_minor",
            "contacts",
        ]
        read_only_fields = fields


class PersonDetailSerializer(PersonSerializer):
    consents = ConsentSerializer(many=True, read_only=True)
    cards = CardSerializer(many=True, read_only=True, source="visible_cards")

    class Meta(PersonSerializer.Meta):
        fields = [*PersonSerializer.Meta.fields, "consents", "cards"]
        read_only_fields = fields


class ContactInputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ContactKind.choices)
    value = serializers.CharField(max_length=254)
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class PersonCreateSerializer(serializers.Serializer):
    last_name = serializers.CharField(max_length=100)
    first_name = serializers.CharField(max_length=100)
    patronymic = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    birth_date = serializers.DateField(required=False, allow_null=True, default=None)
    sex = serializers.ChoiceField(choices=Sex.choices, required=False, allow_blank=True, default="")
    snils = serializers.CharField(max_length=14, required=False, allow_blank=True, default="")
    oms_policy = serializers.CharField(max_length=20, required=False, allow_blank=True, default="")
    contacts = ContactInputSerializer(many=True, required=False, default=list)
    force_reason = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        default="",
        help_text="Create despite likely duplicates (roles allowed to force only).",
    )


class PersonUpdateSerializer(serializers.Serializer):
    last_name = serializers.CharField(max_length=100, required=False)
    first_name = serializers.CharField(max_length=100, required=False)
    patronymic = serializers.CharField(max_length=100, required=False, allow_blank=True)
    birth_date = serializers.DateField(required=False, allow_null=True)
    sex = serializers.ChoiceField(choices=Sex.choices, required=False)
    snils = serializers.CharField(max_length=14, required=False, allow_blank=True)
    oms_policy = serializers.CharField(max_length=20, required=False, allow_blank=True)
    registration_address = serializers.CharField(required=False, allow_blank=True)
    actual_address = serializers.CharField(required=False, allow_blank=True)
    preferred_channel = serializers.ChoiceField(
        choices=Channel.choices, required=False, allow_blank=True
    )
    notes = serializers.CharField(required=False, allow_blank=True)
    is_vip = serializers.BooleanField(required=False)


class CardCreateSerializer(serializers.Serializer):
    card_type = serializers.SlugField(help_text="Card type code, e.g. outpatient.")
    branch = serializers.UUIDField()
    number = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")


class CardIssueSerializer(serializers.Serializer):
    to_staff = serializers.UUIDField(required=False, allow_null=True, default=None)
    to_room = serializers.UUIDField(required=False, allow_null=True, default=None)


class RevokeSerializer(serializers.Serializer):
    revoked_on = serializers.DateField()
    revocation_source = serializers.ChoiceField(choices=ConsentSource.choices)


def _organization(user: Any) -> Any:
    staff = staff_for_user(user)
    if staff is None:
        raise PermissionDenied(_("Only staff members register patients."))
    return staff.organization


def duplicate_response(error: DuplicatePersonError) -> Response:
    """409 in the API's error format, listing the candidates the caller may already see."""
    return Response(
        {
            "error": {
                "code": "duplicate_person",
                "message": str(error),
                "fields": {},
                "candidates": [
                    {
                        "id": str(candidate.person.public_id),
                        "full_name": candidate.person.full_name,
                        "birth_date": candidate.person.birth_date,
                        "reasons": candidate.reasons,
                        "reason_labels": candidate.reason_labels,
                    }
                    for candidate in error.candidates
                ],
            }
        },
        status=status.HTTP_409_CONFLICT,
    )


def _guard(call: Any) -> Any:
    try:
        return call()
    except DjangoPermissionDenied as denied:
        raise PermissionDenied(str(denied) or None) from None


class PersonListCreateView(APIView):
    """Search the registry (?q=) or register a person (duplicates answer 409)."""

    @extend_schema(
        parameters=[OpenApiParameter("q", str, description="Name, phone, date, card, SNILS")],
        responses=PersonSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        if not policies.can_search_people(request.user):
            raise PermissionDenied
        from .search import person_search

        hits = person_search(actor=request.user, query=request.query_params.get("q", ""))
        return Response(PersonSerializer([hit.person for hit in hits], many=True).data)

    @extend_schema(request=PersonCreateSerializer, responses={201: PersonSerializer})
    def post(self, request: Request) -> Response:
        serializer = PersonCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        force_reason = data.pop("force_reason")
        contacts = [ContactInput(**contact) for contact in data.pop("contacts")]
        person_input = PersonInput(**data, contacts=contacts)
        try:
            person = _guard(
                lambda: services.person_create(
                    actor=request.user,
                    organization=_organization(request.user),
                    data=person_input,
                    force_reason=force_reason,
                )
            )
        except DuplicatePersonError as error:
            return duplicate_response(error)
        return Response(PersonSerializer(person).data, status=status.HTTP_201_CREATED)


class PersonDetailView(APIView):
    """One person with contacts, consents and the cards the caller may open."""

    @extend_schema(responses=PersonDetailSerializer)
    def get(self, request: Request, public_id: str) -> Response:
        person = selectors.person_get_for_actor(actor=request.user, public_id=public_id)
        detailed = selectors.person_with_details(actor=request.user, person=person)
        return Response(PersonDetailSerializer(detailed).data)

    @extend_schema(request=PersonUpdateSerializer, responses=PersonSerializer)
    def patch(self, request: Request, public_id: str) -> Response:
        person = selectors.person_get_for_actor(actor=request.user, public_id=public_id)
        serializer = PersonUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        updated = _guard(
            lambda: services.person_update(
                actor=request.user, person=person, changes=dict(serializer.validated_data)
            )
        )
        return Response(PersonSerializer(updated).data)


class ContactCreateView(APIView):
    @extend_schema(request=ContactInputSerializer, responses={201: ContactSerializer})
    def post(self, request: Request, public_id: str) -> Response:
        person = selectors.person_get_for_actor(actor=request.user, public_id=public_id)
        serializer = ContactInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        contact = _guard(
            lambda: services.contact_add(
                actor=request.user, person=person, **serializer.validated_data
            )
        )
        return Response(ContactSerializer(contact).data, status=status.HTTP_201_CREATED)


class ConsentCreateView(APIView):
    @extend_schema(request=ConsentSerializer, responses={201: ConsentSerializer})
    def post(self, request: Request, public_id: str) -> Response:
        person = selectors.person_get_for_actor(actor=request.user, public_id=public_id)
        serializer = ConsentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        consent = _guard(
            lambda: services.consent_give(
                actor=request.user, person=person, **serializer.validated_data
            )
        )
        return Response(ConsentSerializer(consent).data, status=status.HTTP_201_CREATED)


class ConsentRevokeView(APIView):
    @extend_schema(request=RevokeSerializer, responses=ConsentSerializer)
    def post(self, request: Request, public_id: str, consent_id: str) -> Response:
        person = selectors.person_get_for_actor(actor=request.user, public_id=public_id)
        consent = get_object_or_404(Consent, person=person, public_id=consent_id)
        serializer = RevokeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        revoked = _guard(
            lambda: services.consent_revoke(
                actor=request.user,
                consent=consent,
                revoked_on=serializer.validated_data["revoked_on"],
                source=serializer.validated_data["revocation_source"],
            )
        )
        return Response(ConsentSerializer(revoked).data)


class CardCreateView(APIView):
    """Open a card of a type the caller is granted; the number comes from the sequence."""

    @extend_schema(request=CardCreateSerializer, responses={201: CardSerializer})
    def post(self, request: Request, public_id: str) -> Response:
        person = selectors.person_get_for_actor(actor=request.user, public_id=public_id)
        serializer = CardCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        card_type = _card_type_for(request.user, serializer.validated_data["card_type"])
        branch = _branch_for(request.user, serializer.validated_data["branch"])
        card = _guard(
            lambda: services.card_open(
                actor=request.user,
                person=person,
                card_type=card_type,
                branch=branch,
                number=serializer.validated_data["number"],
            )
        )
        return Response(CardSerializer(card).data, status=status.HTTP_201_CREATED)


def _card_type_for(user: Any, code: str) -> CardType:
    card_type = selectors.card_types_for_actor(user).filter(code=code).first()
    if card_type is None:
        raise serializers.ValidationError(
            {"card_type": [_("Unknown card type “%(value)s”.") % {"value": code}]}
        )
    return card_type


def _branch_for(user: Any, public_id: Any) -> Branch:
    branch = branch_list(actor=user).filter(public_id=public_id).first()
    if branch is None:
        raise serializers.ValidationError(
            {"branch": [_("Unknown branch “%(value)s”.") % {"value": public_id}]}
        )
    return branch


class CardDetailView(APIView):
    """A card (the read is written to the access log); cards of other types are 404."""

    @extend_schema(responses=CardSerializer)
    def get(self, request: Request, public_id: str) -> Response:
        card = selectors.card_get_for_actor(
            actor=request.user, public_id=public_id, request=request
        )
        return Response(CardSerializer(card).data)


class CardIssueView(APIView):
    @extend_schema(request=CardIssueSerializer, responses=CardSerializer)
    def post(self, request: Request, public_id: str) -> Response:
        card = selectors.card_get_for_actor(
            actor=request.user, public_id=public_id, request=request
        )
        serializer = CardIssueSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        to_staff: Staff | None = None
        to_room: Room | None = None
        if serializer.validated_data["to_staff"]:
            to_staff = get_object_or_404(
                staff_list(actor=request.user), public_id=serializer.validated_data["to_staff"]
            )
        if serializer.validated_data["to_room"]:
            to_room = get_object_or_404(
                room_list(actor=request.user), public_id=serializer.validated_data["to_room"]
            )
        issued = _guard(
            lambda: services.paper_card_issue(
                actor=request.user, card=card, to_staff=to_staff, to_room=to_room
            )
        )
        return Response(CardSerializer(issued).data)


class CardReturnView(APIView):
    @extend_schema(request=None, responses=CardSerializer)
    def post(self, request: Request, public_id: str) -> Response:
        card = selectors.card_get_for_actor(
            actor=request.user, public_id=public_id, request=request
        )
        returned = _guard(lambda: services.paper_card_return(actor=request.user, card=card))
        return Response(CardSerializer(returned).data)


urlpatterns = [
    path("patients/", PersonListCreateView.as_view(), name="patient-list"),
    path("patients/<uuid:public_id>/", PersonDetailView.as_view(), name="patient-detail"),
    path(
        "patients/<uuid:public_id>/contacts/", ContactCreateView.as_view(), name="patient-contacts"
    ),
    path(
        "patients/<uuid:public_id>/consents/", ConsentCreateView.as_view(), name="patient-consents"
    ),
    path(
        "patients/<uuid:public_id>/consents/<uuid:consent_id>/revoke/",
        ConsentRevokeView.as_view(),
        name="patient-consent-revoke",
    ),
    path("patients/<uuid:public_id>/cards/", CardCreateView.as_view(), name="patient-cards"),
    path("cards/<uuid:public_id>/", CardDetailView.as_view(), name="card-detail"),
    path("cards/<uuid:public_id>/issue/", CardIssueView.as_view(), name="card-issue"),
    path("cards/<uuid:public_id>/return/", CardReturnView.as_view(), name="card-return"),
]

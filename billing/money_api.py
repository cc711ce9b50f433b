"""/api/v1/billing/: invoices, payments, refunds, receipts and patients' balances as JSON.

The same services as the POS page: every refusal is the API's one error format with the field
named, and nothing is half-posted. Objects are addressed by public id; an invoice line by its
position on the invoice (sequential ids never leave the server). A payment or refund may carry an
``Idempotency-Key`` header: the same key returns the document already posted.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.db import models, transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinic.core.selectors import branch_get_for_actor, branch_list
from devices.fiscal.wire import jsonable
from patients.selectors import person_list
from scheduling.models import Appointment

from . import services
from .errors import BillingError
from .fiscal import fiscal_reconciliation, receipt_retry
from .models import FiscalReceipt, Invoice, InvoiceLine, Payment, PaymentMethod
from .params import date_param
from .policies import can_view_financial_reports
from .selectors import (
    invoice_list,
    patient_balance,
    payment_list,
    receipt_list,
    shift_list,
)
from .services import PartInput

T = TypeVar("T", bound=models.Model)


class ReceiptSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    operation = serializers.CharField()
    state = serializers.CharField()
    task_uuid = serializers.UUIDField()
    fn_number = serializers.CharField()
    fiscal_document_number = serializers.CharField()
    fiscal_document_sign = serializers.CharField()
    printed_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField()


class InvoiceLineSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    code = serializers.CharField(source="service_code")
    name = serializers.CharField(source="service_name")
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)
    adjustment = serializers.DecimalField(max_digits=12, decimal_places=2)
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    outstanding = serializers.SerializerMethodField()

    @extend_schema_field(serializers.DecimalField(max_digits=12, decimal_places=2))
    def get_outstanding(self, line: InvoiceLine) -> str:
        outstanding: dict[int, Decimal] = self.context.get("outstanding", {})
        return str(outstanding.get(line.pk, line.amount))


class InvoiceSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    number = serializers.CharField()
    state = serializers.CharField()
    payer = serializers.CharField(source="payer_kind")
    patient = serializers.UUIDField(source="patient.public_id", allow_null=True)
    total = serializers.DecimalField(max_digits=12, decimal_places=2)
    discount_total = serializers.DecimalField(max_digits=12, decimal_places=2)
    posted_at = serializers.DateTimeField(allow_null=True)
    lines = serializers.SerializerMethodField()

    @extend_schema_field(InvoiceLineSerializer(many=True))
    def get_lines(self, invoice: Invoice) -> list[dict[str, Any]]:
        lines = list(invoice.lines.order_by("position"))
        outstanding = services.line_outstanding(lines)
        return list(
            InvoiceLineSerializer(lines, many=True, context={"outstanding": outstanding}).data
        )


class PartInSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=PaymentMethod.choices)
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    card_rrn = serializers.CharField(required=False, allow_blank=True, default="")
    card_auth_code = serializers.CharField(required=False, allow_blank=True, default="")


class PaymentSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    number = serializers.CharField()
    kind = serializers.CharField()
    total = serializers.DecimalField(max_digits=12, decimal_places=2)
    posted_at = serializers.DateTimeField()
    invoice = serializers.UUIDField(source="invoice.public_id", allow_null=True)
    corrects = serializers.UUIDField(source="corrects.public_id", allow_null=True)
    parts = serializers.SerializerMethodField()
    receipt = serializers.SerializerMethodField()

    @extend_schema_field(PartInSerializer(many=True))
    def get_parts(self, payment: Payment) -> list[dict[str, str]]:
        return [{"method": part.method, "amount": str(part.amount)} for part in payment.parts.all()]

    @extend_schema_field(ReceiptSerializer(allow_null=True))
    def get_receipt(self, payment: Payment) -> dict[str, Any] | None:
        receipt = FiscalReceipt.objects.filter(payment=payment).first()
        return dict(ReceiptSerializer(receipt).data) if receipt is not None else None


class InvoiceInSerializer(serializers.Serializer):
    appointments = serializers.ListField(child=serializers.UUIDField(), min_length=1)


class PaymentInSerializer(serializers.Serializer):
    branch = serializers.UUIDField()
    shift = serializers.UUIDField(required=False, allow_null=True)
    invoice = serializers.UUIDField(required=False, allow_null=True)
    patient = serializers.UUIDField(required=False, allow_null=True)
    parts = PartInSerializer(many=True)


class LineAmountSerializer(serializers.Serializer):
    position = serializers.IntegerField(min_value=1)
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)


class RefundInSerializer(serializers.Serializer):
    shift = serializers.UUIDField(required=False, allow_null=True)
    parts = PartInSerializer(many=True)
    lines = LineAmountSerializer(many=True, required=False, default=list)
    reason = serializers.CharField()


def _optional(queryset: QuerySet[T], public_id: Any) -> T | None:
    """The object with that public id among those the actor may see (404 otherwise), or None
    when the request does not name one."""
    return get_object_or_404(queryset, public_id=public_id) if public_id else None


def _parts(data: list[dict[str, Any]]) -> list[PartInput]:
    return [
        PartInput(
            part["method"], part["amount"], part.get("card_rrn", ""), part.get("card_auth_code", "")
        )
        for part in data
    ]


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key", "").strip()
    return key[:100] or None


class InvoiceCreateView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Invoice a patient's visits (a draft with their services not yet invoiced)",
        request=InvoiceInSerializer,
        responses={201: InvoiceSerializer},
    )
    def post(self, request: Request) -> Response:
        body = InvoiceInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        wanted = body.validated_data["appointments"]
        found = list(
            Appointment.objects.select_related("status", "branch", "patient", "doctor").filter(
                public_id__in=wanted, branch__in=branch_list(actor=request.user)
            )
        )
        if len({appointment.public_id for appointment in found}) != len(set(wanted)):
            missing = set(wanted) - {appointment.public_id for appointment in found}
            raise BillingError(
                "appointment_not_found",
                # Translators: the value is an appointment's public id.
                _("Unknown appointment “%(value)s”.") % {"value": sorted(map(str, missing))[0]},
                field="appointments",
            )
        invoice = services.invoice_from_appointments(actor=request.user, appointments=found)
        return Response(InvoiceSerializer(invoice).data, status=status.HTTP_201_CREATED)


class InvoiceDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="An invoice with its lines and what each still lacks", responses=InvoiceSerializer
    )
    def get(self, request: Request, public_id: str) -> Response:
        invoice = get_object_or_404(invoice_list(actor=request.user), public_id=public_id)
        return Response(InvoiceSerializer(invoice).data)


class InvoicePostView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(summary="Post a draft invoice", request=None, responses=InvoiceSerializer)
    def post(self, request: Request, public_id: str) -> Response:
        invoice = get_object_or_404(invoice_list(actor=request.user), public_id=public_id)
        invoice = services.invoice_post(actor=request.user, invoice=invoice)
        return Response(InvoiceSerializer(invoice).data)


class InvoiceCancelView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Cancel an invoice nothing is paid on", request=None, responses=InvoiceSerializer
    )
    def post(self, request: Request, public_id: str) -> Response:
        invoice = get_object_or_404(invoice_list(actor=request.user), public_id=public_id)
        invoice = services.invoice_cancel(actor=request.user, invoice=invoice)
        return Response(InvoiceSerializer(invoice).data)


class PaymentCreateView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Post a payment (for an invoice, or into the patient's advance)",
        request=PaymentInSerializer,
        responses={201: PaymentSerializer, 200: PaymentSerializer},
    )
    def post(self, request: Request) -> Response:
        body = PaymentInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        branch = branch_get_for_actor(actor=request.user, public_id=data["branch"])
        shift = _optional(shift_list(actor=request.user), data.get("shift"))
        invoice = _optional(invoice_list(actor=request.user), data.get("invoice"))
        patient = _optional(person_list(actor=request.user), data.get("patient"))
        key = _idempotency_key(request)
        existed = key is not None and Payment.objects.filter(idempotency_key=key).exists()
        payment = services.payment_post(
            actor=request.user,
            branch=branch,
            shift=shift,
            parts=_parts(data["parts"]),
            patient=patient,
            invoice=invoice,
            idempotency_key=key,
        )
        return Response(
            PaymentSerializer(payment).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )


class PaymentDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="A payment or refund with its receipt's state", responses=PaymentSerializer
    )
    def get(self, request: Request, public_id: str) -> Response:
        payment = get_object_or_404(payment_list(actor=request.user), public_id=public_id)
        return Response(PaymentSerializer(payment).data)


class RefundCreateView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Refund a payment: services not rendered and/or advance money",
        request=RefundInSerializer,
        responses={201: PaymentSerializer},
    )
    def post(self, request: Request, public_id: str) -> Response:
        payment = get_object_or_404(payment_list(actor=request.user), public_id=public_id)
        body = RefundInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        shift = _optional(shift_list(actor=request.user), data.get("shift"))
        lines = []
        if data["lines"]:
            if payment.invoice is None:
                raise BillingError(
                    "invoice_required",
                    _("The payment is not for an invoice: it has no lines to refund."),
                    field="lines",
                )
            by_position = {line.position: line for line in payment.invoice.lines.all()}
            for index, item in enumerate(data["lines"]):
                line = by_position.get(item["position"])
                if line is None:
                    raise BillingError(
                        "line_not_on_invoice",
                        _("The invoice has no line %(value)s.") % {"value": item["position"]},
                        field=f"lines[{index}].position",
                    )
                lines.append((line, item["amount"]))
        refund = services.refund_post(
            actor=request.user,
            payment=payment,
            shift=shift,
            parts=_parts(data["parts"]),
            lines=lines,
            reason=data["reason"],
            idempotency_key=_idempotency_key(request),
        )
        return Response(PaymentSerializer(refund).data, status=status.HTTP_201_CREATED)


class ReceiptDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(summary="A fiscal receipt's state", responses=ReceiptSerializer)
    def get(self, request: Request, public_id: str) -> Response:
        receipt = get_object_or_404(receipt_list(actor=request.user), public_id=public_id)
        return Response(ReceiptSerializer(receipt).data)


class ReceiptRetryView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Send a failed receipt to the register again",
        request=None,
        responses=ReceiptSerializer,
    )
    def post(self, request: Request, public_id: str) -> Response:
        receipt = get_object_or_404(receipt_list(actor=request.user), public_id=public_id)
        with transaction.atomic():
            receipt = receipt_retry(actor=request.user, receipt=receipt)
        return Response(ReceiptSerializer(receipt).data)


class BalanceSerializer(serializers.Serializer):
    patient = serializers.UUIDField()
    debt = serializers.DecimalField(max_digits=12, decimal_places=2)
    advance = serializers.DecimalField(max_digits=12, decimal_places=2)


class PatientBalanceView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(summary="A patient's debt and advance", responses=BalanceSerializer)
    def get(self, request: Request, public_id: str) -> Response:
        patient = get_object_or_404(person_list(actor=request.user), public_id=public_id)
        debt, advance = patient_balance(organization_id=patient.organization_id, patient=patient)
        return Response(
            BalanceSerializer({"patient": patient.public_id, "debt": debt, "advance": advance}).data
        )


class ReconciliationView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Posted payments and refunds against printed fiscal receipts for a period",
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        from django.core.exceptions import PermissionDenied

        if not can_view_financial_reports(request.user):
            raise PermissionDenied
        branch = branch_get_for_actor(
            actor=request.user, public_id=request.query_params.get("branch", "")
        )
        days = {
            name: date_param(request.query_params.get(name, ""), field=name)
            for name in ("since", "until")
        }
        zone = branch.zone
        report = fiscal_reconciliation(
            organization_id=branch.organization_id,
            since=datetime.datetime.combine(days["since"], datetime.time.min, zone),
            until=datetime.datetime.combine(
                days["until"] + datetime.timedelta(days=1), datetime.time.min, zone
            ),
        )
        return Response(jsonable(report))

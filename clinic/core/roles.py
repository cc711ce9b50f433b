"""The roles (Django groups) and the capabilities each has: the single source of the matrix.

``roles_sync`` applies it to the database (a migration and ``manage.py sync_roles`` call it);
``policies.py`` answers every "may this user ...?" from the permissions it grants. README.md shows
the same table for people, and a test keeps the two in step.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    REGISTRAR = "registrar", _("Registrar")
    CALL_CENTRE = "call_centre", _("Call-centre operator")
    DOCTOR = "doctor", _("Doctor")
    NURSE = "nurse", _("Nurse")
    CASHIER = "cashier", _("Cashier")
    LAB_TECHNICIAN = "lab_technician", _("Lab technician")
    HEAD_OF_REGISTRY = "head_of_registry", _("Head of registry")
    ACCOUNTANT = "accountant", _("Accountant")
    ADMINISTRATOR = "administrator", _("Administrator")


class Capability(models.TextChoices):
    """Codenames of the permissions declared on ``core.Staff``'s Meta."""

    VIEW_SCHEDULE = "view_schedule", _("View the schedule")
    BOOK_APPOINTMENT = "book_appointment", _("Book, move and cancel appointments")
    MANAGE_WORK_SCHEDULE = "manage_work_schedule", _("Change work schedules")
    REGISTER_PATIENT = "register_patient", _("Register and edit patients")
    MERGE_PATIENTS = "merge_patients", _("Merge and unmerge patients")
    FORCE_DUPLICATE_PATIENT = "force_duplicate_patient", _("Create a patient despite duplicates")
    VIEW_MEDICAL_CARD = "view_medical_card", _("Open medical cards")
    WRITE_MEDICAL_RECORD = "write_medical_record", _("Write medical records")
    SIGN_MEDICAL_RECORD = "sign_medical_record", _("Sign medical records")
    TAKE_PAYMENT = "take_payment", _("Take payments")
    REFUND_PAYMENT = "refund_payment", _("Refund payments")
    MANAGE_CASH_SHIFT = "manage_cash_shift", _("Open and close cash shifts")
    MANAGE_PRICE_LIST = "manage_price_list", _("Change price lists and contracts")
    VIEW_FINANCIAL_REPORT = "view_financial_report", _("View financial reports")
    RECEIVE_SPECIMEN = "receive_specimen", _("Receive lab specimens")
    ENTER_LAB_RESULT = "enter_lab_result", _("Enter and validate lab results")
    MANAGE_STAFF_ACCESS = "manage_staff_access", _("Manage staff, roles and access")
    MANAGE_REFERENCE_DATA = "manage_reference_data", _("Change reference data and settings")
    VIEW_AUDIT_LOG = "view_audit_log", _("View change history and access logs")
    MANAGE_OUTBOX = "manage_outbox", _("Inspect and re-queue outbox messages")
    REVIEW_FEEDBACK = "review_feedback", _("Read patients' ratings and close their tasks")


class Workplace(models.TextChoices):
    DESK = "desk", _("Reception desk")
    DOCTOR = "doctor", _("Doctor's workplace")
    POS = "pos", _("Cashier's desk")
    LAB = "lab", _("Laboratory")
    ADMIN = "admin", _("Administration")


C = Capability

ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    Role.REGISTRAR: frozenset({C.VIEW_SCHEDULE, C.BOOK_APPOINTMENT, C.REGISTER_PATIENT}),
    Role.CALL_CENTRE: frozenset({C.VIEW_SCHEDULE, C.BOOK_APPOINTMENT, C.REGISTER_PATIENT}),
    Role.DOCTOR: frozenset(
        {C.VIEW_SCHEDULE, C.VIEW_MEDICAL_CARD, C.WRITE_MEDICAL_RECORD, C.SIGN_MEDICAL_RECORD}
    ),
    Role.NURSE: frozenset(
        {C.VIEW_SCHEDULE, C.VIEW_MEDICAL_CARD, C.WRITE_MEDICAL_RECORD, C.RECEIVE_SPECIMEN}
    ),
    Role.CASHIER: frozenset(
        {C.VIEW_SCHEDULE, C.TAKE_PAYMENT, C.REFUND_PAYMENT, C.MANAGE_CASH_SHIFT}
    ),
    Role.LAB_TECHNICIAN: frozenset({C.RECEIVE_SPECIMEN, C.ENTER_LAB_RESULT}),
    Role.HEAD_OF_REGISTRY: frozenset(
        {
            C.VIEW_SCHEDULE,
            C.BOOK_APPOINTMENT,
            C.MANAGE_WORK_SCHEDULE,
            C.REGISTER_PATIENT,
            C.MERGE_PATIENTS,
            C.FORCE_DUPLICATE_PATIENT,
            C.VIEW_AUDIT_LOG,
            C.REVIEW_FEEDBACK,
        }
    ),
    Role.ACCOUNTANT: frozenset(
        {C.REFUND_PAYMENT, C.MANAGE_PRICE_LIST, C.VIEW_FINANCIAL_REPORT, C.VIEW_AUDIT_LOG}
    ),
    Role.ADMINISTRATOR: frozenset(
        {
            C.VIEW_SCHEDULE,
            C.MANAGE_WORK_SCHEDULE,
            C.MERGE_PATIENTS,
            C.MANAGE_PRICE_LIST,
            C.MANAGE_STAFF_ACCESS,
            C.MANAGE_REFERENCE_DATA,
            C.VIEW_AUDIT_LOG,
            C.MANAGE_OUTBOX,
            C.REVIEW_FEEDBACK,
        }
    ),
}

# Which capabilities open which workplace (any one of them does).
WORKPLACE_CAPABILITIES: dict[str, frozenset[str]] = {
    Workplace.DESK: frozenset({C.BOOK_APPOINTMENT}),
    Workplace.DOCTOR: frozenset({C.VIEW_MEDICAL_CARD}),
    Workplace.POS: frozenset({C.TAKE_PAYMENT, C.VIEW_FINANCIAL_REPORT}),
    Workplace.LAB: frozenset({C.ENTER_LAB_RESULT}),
    Workplace.ADMIN: frozenset({C.MANAGE_REFERENCE_DATA}),
}

# A role's own workplace, where its members land after logging in.
ROLE_HOME: dict[str, str] = {
    Role.REGISTRAR: Workplace.DESK,
    Role.CALL_CENTRE: Workplace.DESK,
    Role.DOCTOR: Workplace.DOCTOR,
    Role.NURSE: Workplace.DOCTOR,
    Role.CASHIER: Workplace.POS,
    Role.LAB_TECHNICIAN: Workplace.LAB,
    Role.HEAD_OF_REGISTRY: Workplace.DESK,
    Role.ACCOUNTANT: Workplace.POS,
    Role.ADMINISTRATOR: Workplace.ADMIN,
}

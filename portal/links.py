"""Signed links to one appointment: the patient opens and cancels it without an account.

The link carries only the appointment's public id, signed with the project's secret; it stops
working once the visit has started.
"""

from __future__ import annotations

from django.core import signing
from django.utils import timezone

from scheduling.models import Appointment

SALT = "portal.appointment"


def appointment_token(appointment: Appointment) -> str:
    return signing.dumps(str(appointment.public_id), salt=SALT, compress=True)


def appointment_from_token(token: str) -> Appointment | None:
    """The appointment the token was signed for while its visit is still ahead, else None."""
    try:
        public_id = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        return None
    appointment = (
        Appointment.objects.select_related("doctor", "branch", "status")
        .prefetch_related("services")
        .filter(public_id=public_id)
        .first()
    )
    if appointment is None:
        return None
    if appointment.starts_at <= timezone.now():
        return None
    return appointment

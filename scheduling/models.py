"""Resources, services, work schedules, appointments, waitlist and quotas.

An appointment occupies one or more *resources* (a doctor, a room, a piece of equipment) for a
time range. ``Occupancy`` rows carry the exclusion constraint that makes a double booking
impossible in the database: two active occupancies of one resource never overlap. Everything
else here (schedules, holds, quotas) decides what is *offered*; the constraint decides what is
*possible*.

Times are stored in UTC; schedules are defined in the branch's local time.
"""

from __future__ import annotations

import datetime

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import ArrayField, DateTimeRangeField, RangeOperators
from django.contrib.postgres.indexes import BrinIndex
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from clinic.audit.history import track_history
from clinic.core.models import (
    Branch,
    Organization,
    Room,
    RoomType,
    Specialty,
    Staff,
    TimeStampedModel,
)
from patients.models import Person


class ResourceKind(models.TextChoices):
    DOCTOR = "doctor", _("Doctor")
    ROOM = "room", _("Room")
    EQUIPMENT = "equipment", _("Equipment")


class BookingChannel(models.TextChoices):
    DESK = "desk", _("Reception desk")
    CALL_CENTRE = "call_centre", _("Call centre")
    PORTAL = "portal", _("Online portal")
    DOCTOR = "doctor", pgettext_lazy("booking channel", "Doctor")


def default_channels() -> list[str]:
    return [choice.value for choice in BookingChannel]


@track_history()
class Resource(TimeStampedModel):
    """Something an appointment occupies: a doctor, a room or a piece of equipment in a branch.

    A doctor is one resource whatever branch he works in today, so that the exclusion constraint
    also stops him being booked in two branches at once; ``branch`` is his home branch and each
    work schedule names the branch it is worked in.
    """

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    branch = models.ForeignKey(
        Branch, verbose_name=_("branch"), on_delete=models.PROTECT, related_name="resources"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=ResourceKind.choices)
    name = models.CharField(_("name"), max_length=200)
    staff = models.OneToOneField(
        Staff,
        verbose_name=_("doctor"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="resource",
    )
    room = models.OneToOneField(
        Room,
        verbose_name=_("room"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="resource",
    )
    equipment_type = models.CharField(
        _("equipment type"),
        max_length=60,
        blank=True,
        help_text=_("A code shared by interchangeable devices, such as “ultrasound” or “ecg”."),
    )
    grid_step_minutes = models.PositiveSmallIntegerField(
        _("grid step, minutes"),
        default=15,
        validators=[MinValueValidator(5), MaxValueValidator(60)],
    )
    min_patient_age = models.PositiveSmallIntegerField(
        _("youngest patient, years"), null=True, blank=True
    )
    max_patient_age = models.PositiveSmallIntegerField(
        _("oldest patient, years"),
        null=True,
        blank=True,
        help_text=_("17 for a paediatrician; empty when there is no limit."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("resource")
        verbose_name_plural = _("resources")
        ordering = ["kind", "name"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="doctor", staff__isnull=False, room__isnull=True)
                    | Q(kind="room", room__isnull=False, staff__isnull=True)
                    | Q(kind="equipment", staff__isnull=True, room__isnull=True)
                ),
                name="scheduling_resource_kind_matches_link",
            ),
            models.CheckConstraint(
                condition=Q(grid_step_minutes__gte=5, grid_step_minutes__lte=60),
                name="scheduling_resource_grid_step_5_60",
            ),
        ]
        indexes = [models.Index(fields=["branch", "kind"], name="scheduling_resource_branch")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.kind == ResourceKind.DOCTOR and self.staff_id is None:
            raise ValidationError({"staff": _("A doctor resource names the staff member.")})
        if self.kind == ResourceKind.ROOM and self.room_id is None:
            raise ValidationError({"room": _("A room resource names the room.")})
        if self.kind == ResourceKind.EQUIPMENT and not self.equipment_type:
            raise ValidationError({"equipment_type": _("Give the equipment type.")})
        if (
            self.min_patient_age is not None
            and self.max_patient_age is not None
            and self.min_patient_age > self.max_patient_age
        ):
            raise ValidationError(
                {"max_patient_age": _("The oldest age is below the youngest age.")}
            )

    @property
    def specialty_id(self) -> int | None:
        return self.staff.specialty_id if self.staff_id and self.staff else None


@track_history()
class AppointmentKind(TimeStampedModel):
    """Primary visit, repeat visit, consultation, procedure: reference data with a duration."""

    code = models.SlugField(_("code"), max_length=30, unique=True)
    name = models.CharField(_("name"), max_length=100)
    default_duration_minutes = models.PositiveSmallIntegerField(
        _("default duration, minutes"), validators=[MinValueValidator(5)]
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("appointment kind")
        verbose_name_plural = _("appointment kinds")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


@track_history()
class Service(TimeStampedModel):
    """A bookable medical service from the catalogue billing prices later."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    code = models.CharField(_("code"), max_length=40)
    name = models.CharField(_("name"), max_length=300)
    kind = models.ForeignKey(
        AppointmentKind,
        verbose_name=_("appointment kind"),
        on_delete=models.PROTECT,
        related_name="services",
    )
    duration_minutes = models.PositiveSmallIntegerField(
        _("duration, minutes"),
        null=True,
        blank=True,
        validators=[MinValueValidator(5)],
        help_text=_("Empty: the appointment kind's default duration."),
    )
    buffer_after_minutes = models.PositiveSmallIntegerField(
        _("buffer after, minutes"), default=0, validators=[MaxValueValidator(24 * 60)]
    )
    channels = ArrayField(
        models.CharField(max_length=16, choices=BookingChannel.choices),
        verbose_name=_("booking channels"),
        default=default_channels,
    )
    min_age = models.PositiveSmallIntegerField(_("youngest patient, years"), null=True, blank=True)
    max_age = models.PositiveSmallIntegerField(_("oldest patient, years"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("service")
        verbose_name_plural = _("services")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "code"], name="scheduling_service_code_per_org"
            ),
            models.CheckConstraint(
                condition=Q(buffer_after_minutes__lte=24 * 60),
                name="scheduling_service_buffer_at_most_a_day",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    @property
    def duration(self) -> datetime.timedelta:
        minutes = self.duration_minutes or self.kind.default_duration_minutes
        return datetime.timedelta(minutes=minutes)

    @property
    def buffer_after(self) -> datetime.timedelta:
        return datetime.timedelta(minutes=self.buffer_after_minutes)


@track_history()
class ServiceRequirement(models.Model):
    """One resource a service needs: a doctor (of a specialty or a named one), a room of a type,
    or a piece of equipment of a type. A service may need any combination."""

    service = models.ForeignKey(
        Service, verbose_name=_("service"), on_delete=models.CASCADE, related_name="requirements"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=ResourceKind.choices)
    specialty = models.ForeignKey(
        Specialty,
        verbose_name=_("specialty"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    resource = models.ForeignKey(
        Resource,
        verbose_name=_("named resource"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    room_type = models.CharField(
        _("room type"), max_length=20, choices=RoomType.choices, blank=True
    )
    equipment_type = models.CharField(_("equipment type"), max_length=60, blank=True)

    class Meta:
        verbose_name = _("service requirement")
        verbose_name_plural = _("service requirements")
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="doctor") & (Q(specialty__isnull=False) | Q(resource__isnull=False))
                    | Q(kind="room") & (~Q(room_type="") | Q(resource__isnull=False))
                    | Q(kind="equipment") & (~Q(equipment_type="") | Q(resource__isnull=False))
                ),
                name="scheduling_requirement_says_what",
            )
        ]

    def __str__(self) -> str:
        what = (
            self.resource or self.specialty or self.get_room_type_display() or self.equipment_type
        )
        return f"{self.get_kind_display()}: {what}"


class CalendarDayType(models.TextChoices):
    WORKING = "working", _("Working day")
    HOLIDAY = "holiday", _("Holiday")
    DAY_OFF = "day_off", _("Day off")
    SHORTENED = "shortened", _("Shortened day")


@track_history()
class CalendarDay(TimeStampedModel):
    """A day of an organization's production calendar that differs from Monday–Friday work.

    Days without a row follow the week: Monday to Friday working, Saturday and Sunday off. A
    shortened day (the eve of a holiday) ends ``shortened_by_minutes`` earlier.
    """

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    date = models.DateField(_("date"))
    day_type = models.CharField(_("type"), max_length=16, choices=CalendarDayType.choices)
    shortened_by_minutes = models.PositiveSmallIntegerField(_("shortened by, minutes"), default=60)
    name = models.CharField(_("name"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("production calendar day")
        verbose_name_plural = _("production calendar")
        ordering = ["date"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "date"], name="scheduling_calendar_day_per_org"
            )
        ]

    def __str__(self) -> str:
        return f"{self.date}: {self.get_day_type_display()}"


@track_history()
class ShiftTemplate(TimeStampedModel):
    """A reusable working day: 09:00–17:00 with a 13:00–14:00 break."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    name = models.CharField(_("name"), max_length=100)
    start_time = models.TimeField(_("start"))
    end_time = models.TimeField(_("end"))
    break_start = models.TimeField(_("break start"), null=True, blank=True)
    break_end = models.TimeField(_("break end"), null=True, blank=True)

    class Meta:
        verbose_name = _("shift template")
        verbose_name_plural = _("shift templates")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(start_time__lt=models.F("end_time")),
                name="scheduling_shift_start_before_end",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.start_time:%H:%M}–{self.end_time:%H:%M}"

    def clean(self) -> None:
        _validate_shift(self.start_time, self.end_time, self.break_start, self.break_end)


def _validate_shift(
    start: datetime.time | None,
    end: datetime.time | None,
    break_start: datetime.time | None,
    break_end: datetime.time | None,
) -> None:
    if start is not None and end is not None and start >= end:
        raise ValidationError(
            {"end_time": _("The shift ends at %(end)s, not after its start.") % {"end": end}}
        )
    if (break_start is None) != (break_end is None):
        raise ValidationError({"break_end": _("Give both the start and the end of the break.")})
    if (
        break_start is not None
        and break_end is not None
        and start
        and end
        and not (start <= break_start < break_end <= end)
    ):
        raise ValidationError(
            {"break_start": _("The break must lie inside the shift and end after it starts.")}
        )


class Rotation(models.TextChoices):
    WEEKDAYS = "weekdays", _("Chosen weekdays")
    CYCLE = "cycle", _("Days on / days off")
    ODD_DAYS = "odd", _("Odd days of the month")
    EVEN_DAYS = "even", _("Even days of the month")


@track_history()
class WorkSchedule(TimeStampedModel):
    """When a resource works over a date range, in the local time of ``branch``.

    Rotation decides which days are worked: chosen weekdays (1 = Monday), a cycle of
    ``days_on`` working days then ``days_off`` free days counted from ``date_from``, or odd/even
    days of the month. With ``follows_calendar`` the production calendar's holidays are off and
    shortened days end earlier. A later schedule (higher ``id``) overrides an earlier one on the
    days both cover.
    """

    resource = models.ForeignKey(
        Resource, verbose_name=_("resource"), on_delete=models.PROTECT, related_name="schedules"
    )
    branch = models.ForeignKey(
        Branch, verbose_name=_("branch"), on_delete=models.PROTECT, related_name="+"
    )
    room = models.ForeignKey(
        Room,
        verbose_name=_("room"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Where a doctor receives patients on these days."),
    )
    date_from = models.DateField(pgettext_lazy("date range", "from"))
    date_to = models.DateField(pgettext_lazy("date range", "to"), null=True, blank=True)
    rotation = models.CharField(
        _("rotation"), max_length=16, choices=Rotation.choices, default=Rotation.WEEKDAYS
    )
    weekdays = ArrayField(
        models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(7)]),
        verbose_name=_("weekdays"),
        default=list,
        blank=True,
    )
    days_on = models.PositiveSmallIntegerField(_("days on"), default=2)
    days_off = models.PositiveSmallIntegerField(_("days off"), default=2)
    start_time = models.TimeField(_("start"))
    end_time = models.TimeField(_("end"))
    break_start = models.TimeField(_("break start"), null=True, blank=True)
    break_end = models.TimeField(_("break end"), null=True, blank=True)
    follows_calendar = models.BooleanField(_("follows the production calendar"), default=True)

    class Meta:
        verbose_name = _("work schedule")
        verbose_name_plural = _("work schedules")
        ordering = ["resource", "date_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(date_to__isnull=True) | Q(date_from__lte=models.F("date_to")),
                name="scheduling_schedule_dates_ordered",
            ),
            models.CheckConstraint(
                condition=Q(start_time__lt=models.F("end_time")),
                name="scheduling_schedule_start_before_end",
            ),
        ]
        indexes = [
            models.Index(fields=["resource", "date_from"], name="scheduling_schedule_resource")
        ]

    def __str__(self) -> str:
        return f"{self.resource}: {self.date_from}–{self.date_to or '…'}"

    def clean(self) -> None:
        _validate_shift(self.start_time, self.end_time, self.break_start, self.break_end)
        if self.date_to and self.date_from and self.date_to < self.date_from:
            raise ValidationError({"date_to": _("The end date is before the start date.")})
        if self.rotation == Rotation.WEEKDAYS and not self.weekdays:
            raise ValidationError({"weekdays": _("Choose at least one weekday.")})
        if any(day < 1 or day > 7 for day in self.weekdays):
            raise ValidationError({"weekdays": _("Weekdays are numbered 1 (Monday) to 7.")})
        if self.rotation == Rotation.CYCLE and self.days_on < 1:
            raise ValidationError({"days_on": _("A cycle has at least one working day.")})


class ExceptionKind(models.TextChoices):
    DAY_OFF = "day_off", _("Day off")
    SICK_LEAVE = "sick_leave", _("Sick leave")
    VACATION = "vacation", _("Vacation")
    TRAINING = "training", _("Training")


@track_history()
class ScheduleException(TimeStampedModel):
    """Days a resource does not work although its schedule says so (day off, sick, vacation)."""

    resource = models.ForeignKey(
        Resource, verbose_name=_("resource"), on_delete=models.PROTECT, related_name="exceptions"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=ExceptionKind.choices)
    date_from = models.DateField(pgettext_lazy("date range", "from"))
    date_to = models.DateField(pgettext_lazy("date range", "to"))
    note = models.CharField(_("note"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("schedule exception")
        verbose_name_plural = _("schedule exceptions")
        ordering = ["resource", "date_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(date_from__lte=models.F("date_to")),
                name="scheduling_exception_dates_ordered",
            )
        ]
        indexes = [
            models.Index(fields=["resource", "date_to"], name="scheduling_exception_resource")
        ]

    def __str__(self) -> str:
        return f"{self.resource}: {self.get_kind_display()} {self.date_from}–{self.date_to}"

    def clean(self) -> None:
        if self.date_from and self.date_to and self.date_to < self.date_from:
            raise ValidationError({"date_to": _("The end date is before the start date.")})


@track_history()
class ScheduleBreak(TimeStampedModel):
    """An ad-hoc break of a resource (a meeting, a repair): no bookings inside it."""

    resource = models.ForeignKey(
        Resource, verbose_name=_("resource"), on_delete=models.PROTECT, related_name="breaks"
    )
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(_("ends at"))
    reason = models.CharField(_("reason"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("break")
        verbose_name_plural = _("breaks")
        ordering = ["resource", "starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_at__lt=models.F("ends_at")),
                name="scheduling_break_start_before_end",
            )
        ]
        indexes = [models.Index(fields=["resource", "ends_at"], name="scheduling_break_resource")]

    def __str__(self) -> str:
        return f"{self.resource}: {self.starts_at}–{self.ends_at}"


@track_history()
class ChannelRule(TimeStampedModel):
    """How soon and how far ahead a channel may book in an organization."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    channel = models.CharField(_("channel"), max_length=16, choices=BookingChannel.choices)
    min_notice_minutes = models.PositiveIntegerField(_("minimum notice, minutes"), default=0)
    horizon_days = models.PositiveIntegerField(_("booking horizon, days"), default=60)

    class Meta:
        verbose_name = _("booking channel rule")
        verbose_name_plural = _("booking channel rules")
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "channel"], name="scheduling_channel_rule_per_org"
            )
        ]

    def __str__(self) -> str:
        return self.get_channel_display()


class AppointmentStatus(models.Model):
    """Reference data: where the patient is in the clinic, with the grid's colour.

    ``occupies`` says whether an appointment in this status holds its resources (a cancelled
    one does not; a no-show keeps its past time so history reads true).
    """

    BOOKED = "booked"
    CONFIRMED = "confirmed"
    ARRIVED = "arrived"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"

    code = models.SlugField(_("code"), max_length=30, unique=True)
    name = models.CharField(_("name"), max_length=100)
    colour = models.CharField(_("colour"), max_length=7, default="#3b82f6")
    occupies = models.BooleanField(_("holds its time"), default=True)
    is_final = models.BooleanField(_("final"), default=False)
    order = models.PositiveSmallIntegerField(_("order"), default=0)

    class Meta:
        verbose_name = _("appointment status")
        verbose_name_plural = _("appointment statuses")
        ordering = ["order"]

    def __str__(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        """The name in the reader's language: the names are reference data stored in Russian,
        so the standard statuses show a translated label; a status an admin added shows its
        stored name."""
        standard = STANDARD_STATUS_LABELS.get(self.code)
        return str(standard) if standard is not None else self.name


STANDARD_STATUS_LABELS = {
    AppointmentStatus.BOOKED: pgettext_lazy("appointment status", "Booked"),
    AppointmentStatus.CONFIRMED: pgettext_lazy("appointment status", "Confirmed"),
    AppointmentStatus.ARRIVED: pgettext_lazy("appointment status", "Arrived"),
    AppointmentStatus.IN_PROGRESS: pgettext_lazy("appointment status", "In progress"),
    AppointmentStatus.COMPLETED: pgettext_lazy("appointment status", "Completed"),
    AppointmentStatus.NO_SHOW: pgettext_lazy("appointment status", "No-show"),
    AppointmentStatus.CANCELLED: pgettext_lazy("appointment status", "Cancelled"),
}


class CancelReason(models.Model):
    """Reference data: why an appointment was cancelled."""

    code = models.SlugField(_("code"), max_length=30, unique=True)
    name = models.CharField(_("name"), max_length=200)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("cancellation reason")
        verbose_name_plural = _("cancellation reasons")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class InformationSource(models.Model):
    """Reference data: how the patient heard of the clinic."""

    code = models.SlugField(_("code"), max_length=30, unique=True)
    name = models.CharField(_("name"), max_length=200)

    class Meta:
        verbose_name = _("information source")
        verbose_name_plural = _("information sources")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


@track_history()
class ReferringAgent(TimeStampedModel):
    """A doctor or organization that sends patients (for referral accounting)."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    name = models.CharField(_("name"), max_length=300)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("referring agent")
        verbose_name_plural = _("referring agents")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BookingType(models.TextChoices):
    PLANNED = "planned", _("Planned")
    URGENT = "urgent", _("Urgent")
    WALK_IN = "walk_in", _("Walk-in")
    FOLLOW_UP = "follow_up", _("Follow-up")


class CommunicationStatus(models.TextChoices):
    NOT_CONTACTED = "not_contacted", _("Not contacted")
    REMINDED = "reminded", _("Reminded")
    CONFIRMED = "confirmed", pgettext_lazy("communication status", "Confirmed")
    NO_ANSWER = "no_answer", _("No answer")
    DECLINED = "declined", _("Declined")


class PayerKind(models.TextChoices):
    SELF_PAY = "self_pay", _("Self-pay")
    DMS = "dms", _("Voluntary insurance (DMS)")
    OMS = "oms", _("Compulsory insurance (OMS)")
    CONTRACT = "contract", _("Corporate contract")


@track_history(exclude=("idempotency_fingerprint",))
class Appointment(TimeStampedModel):
    """A patient's visit: when, to whom and for what, through the statuses of the day.

    A *primary* patient, known only by name, phone and birth date, has no ``patient`` yet and
    ``needs_completion`` set; the desk completes the registration at the first visit.
    """

    organization = models.ForeignKey(
        Organization,
        verbose_name=_("organization"),
        on_delete=models.PROTECT,
        db_index=False,
        related_name="+",
    )
    branch = models.ForeignKey(
        Branch,
        verbose_name=_("branch"),
        on_delete=models.PROTECT,
        db_index=False,
        related_name="appointments",
    )
    patient = models.ForeignKey(
        Person,
        verbose_name=_("patient"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="appointments",
    )
    primary_last_name = models.CharField(_("last name"), max_length=100, blank=True)
    primary_first_name = models.CharField(_("first name"), max_length=100, blank=True)
    primary_patronymic = models.CharField(_("patronymic"), max_length=100, blank=True)
    primary_phone = models.CharField(_("phone"), max_length=32, blank=True)
    primary_birth_date = models.DateField(_("birth date"), null=True, blank=True)
    needs_completion = models.BooleanField(_("registration to be completed"), default=False)
    kind = models.ForeignKey(
        AppointmentKind,
        verbose_name=_("kind"),
        on_delete=models.PROTECT,
        db_index=False,
        related_name="+",
    )
    services: models.ManyToManyField[Service, AppointmentService] = models.ManyToManyField(
        Service, verbose_name=_("services"), through="AppointmentService", related_name="+"
    )
    doctor = models.ForeignKey(
        Resource,
        verbose_name=_("doctor"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
    )
    room = models.ForeignKey(
        Room,
        verbose_name=_("room"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
    )
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(_("ends at"))
    status = models.ForeignKey(
        AppointmentStatus,
        verbose_name=_("status"),
        on_delete=models.PROTECT,
        db_index=False,
        related_name="+",
    )
    channel = models.CharField(_("channel"), max_length=16, choices=BookingChannel.choices)
    booking_type = models.CharField(
        _("booking type"), max_length=16, choices=BookingType.choices, default=BookingType.PLANNED
    )
    information_source = models.ForeignKey(
        InformationSource,
        verbose_name=_("information source"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
    )
    communication_status = models.CharField(
        _("communication status"),
        max_length=16,
        choices=CommunicationStatus.choices,
        default=CommunicationStatus.NOT_CONTACTED,
    )
    payer_kind = models.CharField(
        _("payer"), max_length=16, choices=PayerKind.choices, default=PayerKind.SELF_PAY
    )
    note = models.TextField(_("note"), blank=True)
    assistant = models.ForeignKey(
        Staff,
        verbose_name=_("assistant"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
    )
    referring_agent = models.ForeignKey(
        ReferringAgent,
        verbose_name=_("referring agent"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
    )
    follow_up_of = models.ForeignKey(
        "self",
        verbose_name=_("follow-up of"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="follow_ups",
    )
    copied_from = models.ForeignKey(
        "self",
        verbose_name=_("copied from"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="copies",
    )
    cancel_reason = models.ForeignKey(
        CancelReason,
        verbose_name=_("cancellation reason"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
    )
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    held_at = models.DateTimeField(
        _("slot held since"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("When the hold this booking was made with was taken."),
    )
    idempotency_key = models.CharField(_("idempotency key"), max_length=100, null=True, blank=True)
    idempotency_fingerprint = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        verbose_name = _("appointment")
        verbose_name_plural = _("appointments")
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_at__lt=models.F("ends_at")),
                name="scheduling_appointment_start_before_end",
            ),
            models.CheckConstraint(
                condition=Q(patient__isnull=False)
                | (~Q(primary_last_name="") & ~Q(primary_phone="")),
                name="scheduling_appointment_has_patient",
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="scheduling_appointment_idempotency_key_key",
            ),
        ]
        # Every booking writes one entry into each index of this table, so the table has the
        # indexes its readers use and no more: the grid and lists read by branch, doctor or
        # patient and time; the optional links are indexed only where they are set (deleting a
        # referenced row finds its appointments through them); reference data (kind, status)
        # and the organization are not looked up from here.
        indexes = [
            models.Index(fields=["branch", "starts_at"], name="scheduling_appt_branch_start"),
            models.Index(fields=["doctor", "starts_at"], name="scheduling_appt_doctor_start"),
            models.Index(fields=["patient", "starts_at"], name="scheduling_appt_patient_start"),
            *(
                models.Index(fields=[name], condition=Q(**{f"{name}__isnull": False}), name=index)
                for name, index in (
                    ("room", "scheduling_appt_room"),
                    ("information_source", "scheduling_appt_source"),
                    ("assistant", "scheduling_appt_assistant"),
                    ("referring_agent", "scheduling_appt_agent"),
                    ("follow_up_of", "scheduling_appt_follow_up_of"),
                    ("copied_from", "scheduling_appt_copied_from"),
                    ("cancel_reason", "scheduling_appt_cancel_reason"),
                )
            ),
            # Reports read bookings by the time they were made; rows are appended in that
            # order, so a BRIN index finds a period in a few pages and costs a booking next to
            # nothing.
            BrinIndex(fields=["created_at"], name="scheduling_appt_created_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.starts_at:%Y-%m-%d %H:%M} {self.patient_name}"

    @property
    def patient_name(self) -> str:
        if self.patient_id is not None and self.patient is not None:
            return self.patient.full_name
        parts = (self.primary_last_name, self.primary_first_name, self.primary_patronymic)
        return " ".join(part for part in parts if part)

    @property
    def is_cancelled(self) -> bool:
        return self.status.code == AppointmentStatus.CANCELLED


class AppointmentService(models.Model):
    """A service of an appointment (an appointment may bundle several)."""

    appointment = models.ForeignKey(
        Appointment,
        verbose_name=_("appointment"),
        on_delete=models.CASCADE,
        db_index=False,
        related_name="lines",
    )
    service = models.ForeignKey(
        Service, verbose_name=_("service"), on_delete=models.PROTECT, related_name="+"
    )
    quantity = models.PositiveSmallIntegerField(_("quantity"), default=1)

    class Meta:
        verbose_name = _("appointment service")
        verbose_name_plural = _("appointment services")
        constraints = [
            models.UniqueConstraint(
                fields=["appointment", "service"], name="scheduling_appt_service_once"
            )
        ]

    def __str__(self) -> str:
        return str(self.service)


class Occupancy(models.Model):
    """A resource taken by an appointment for ``during`` (its time plus the buffer after).

    The exclusion constraint is the single guarantee against double booking: two active
    occupancies of one resource never overlap, whoever writes them and however.
    """

    appointment = models.ForeignKey(
        Appointment,
        verbose_name=_("appointment"),
        on_delete=models.CASCADE,
        db_index=False,  # the unique (appointment, resource) index serves it
        related_name="occupancies",
    )
    resource = models.ForeignKey(
        Resource,
        verbose_name=_("resource"),
        on_delete=models.PROTECT,
        db_index=False,  # the exclusion constraint's and the active-start indexes serve it
        related_name="occupancies",
    )
    during = DateTimeRangeField(_("during"))
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("occupancy")
        verbose_name_plural = _("occupancies")
        constraints = [
            ExclusionConstraint(
                name="scheduling_occupancy_no_overlap",
                expressions=[
                    ("resource", RangeOperators.EQUAL),
                    ("during", RangeOperators.OVERLAPS),
                ],
                condition=Q(is_active=True),
            ),
            models.UniqueConstraint(
                fields=["appointment", "resource"], name="scheduling_occupancy_once_per_resource"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource}: {self.during}"


class QuotaScope(models.TextChoices):
    PAYER = "payer", _("Payer")
    SERVICE = "service", _("Service")
    DOCTOR = "doctor", pgettext_lazy("quota scope", "Doctor")


class QuotaPeriod(models.TextChoices):
    DAY = "day", _("Day")
    WEEK = "week", _("Week")
    MONTH = "month", _("Month")


@track_history()
class Quota(TimeStampedModel):
    """At most ``limit`` active appointments per period for a payer, a service or a doctor."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    scope = models.CharField(_("scope"), max_length=16, choices=QuotaScope.choices)
    payer_kind = models.CharField(_("payer"), max_length=16, choices=PayerKind.choices, blank=True)
    service = models.ForeignKey(
        Service,
        verbose_name=_("service"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="quotas",
    )
    resource = models.ForeignKey(
        Resource,
        verbose_name=_("doctor"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="quotas",
    )
    period = models.CharField(_("period"), max_length=8, choices=QuotaPeriod.choices)
    limit = models.PositiveIntegerField(_("limit"))
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("quota")
        verbose_name_plural = _("quotas")
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(scope="payer") & ~Q(payer_kind="")
                    | Q(scope="service", service__isnull=False)
                    | Q(scope="doctor", resource__isnull=False)
                ),
                name="scheduling_quota_names_its_subject",
            )
        ]

    def __str__(self) -> str:
        subject = (
            self.get_payer_kind_display()
            if self.scope == QuotaScope.PAYER
            else (self.service or self.resource)
        )
        return f"{subject}: {self.limit} / {self.get_period_display()}"


class WaitlistState(models.TextChoices):
    WAITING = "waiting", _("Waiting")
    OFFERED = "offered", _("Offered a slot")
    BOOKED = "booked", _("Booked")
    CANCELLED = "cancelled", _("Cancelled")


@track_history()
class WaitlistEntry(TimeStampedModel):
    """A patient waiting for a doctor or a service, in a window or open-ended."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    branch = models.ForeignKey(
        Branch, verbose_name=_("branch"), on_delete=models.PROTECT, related_name="+"
    )
    patient = models.ForeignKey(
        Person, verbose_name=_("patient"), on_delete=models.PROTECT, related_name="waitlist"
    )
    service = models.ForeignKey(
        Service, verbose_name=_("service"), on_delete=models.PROTECT, related_name="+"
    )
    doctor = models.ForeignKey(
        Resource,
        verbose_name=_("doctor"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    date_from = models.DateField(pgettext_lazy("date range", "from"), null=True, blank=True)
    date_to = models.DateField(pgettext_lazy("date range", "to"), null=True, blank=True)
    time_from = models.TimeField(_("not earlier than"), null=True, blank=True)
    time_to = models.TimeField(_("not later than"), null=True, blank=True)
    state = models.CharField(
        _("state"), max_length=16, choices=WaitlistState.choices, default=WaitlistState.WAITING
    )
    note = models.CharField(_("note"), max_length=300, blank=True)
    appointment = models.ForeignKey(
        Appointment,
        verbose_name=_("appointment"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("waitlist entry")
        verbose_name_plural = _("waitlist")
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(
                fields=["service", "created_at"],
                condition=Q(state__in=["waiting", "offered"]),
                name="scheduling_waitlist_open",
            )
        ]

    def __str__(self) -> str:
        return f"{self.patient}: {self.service}"


class OfferState(models.TextChoices):
    OFFERED = "offered", _("Offered")
    ACCEPTED = "accepted", _("Accepted")
    TAKEN = "taken", _("Taken by someone else")
    DECLINED = "declined", _("Declined")
    EXPIRED = "expired", _("Expired")


class WaitlistOffer(TimeStampedModel):
    """A freed slot offered to a waiting patient; the first to accept gets it."""

    entry = models.ForeignKey(
        WaitlistEntry,
        verbose_name=_("waitlist entry"),
        on_delete=models.CASCADE,
        related_name="offers",
    )
    doctor = models.ForeignKey(
        Resource, verbose_name=_("doctor"), on_delete=models.PROTECT, related_name="+"
    )
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(_("ends at"))
    state = models.CharField(
        _("state"), max_length=16, choices=OfferState.choices, default=OfferState.OFFERED
    )
    expires_at = models.DateTimeField(_("expires at"))
    freed_at = models.DateTimeField(_("slot freed at"))
    outbox_message = models.ForeignKey(
        "outbox.OutboxMessage",
        verbose_name=_("message"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("waitlist offer")
        verbose_name_plural = _("waitlist offers")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.entry}: {self.starts_at}"

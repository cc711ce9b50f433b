from django.db import migrations

# Names are stored in Russian, the language of the clinics; admins may rename them.
STATUSES = [
    # code, name, colour, occupies, is_final, order
    ("booked", "Записан", "#3b82f6", True, False, 10),
    ("confirmed", "Подтверждён", "#6366f1", True, False, 20),
    ("arrived", "Пришёл", "#f59e0b", True, False, 30),
    ("in_progress", "На приёме", "#ef4444", True, False, 40),
    ("completed", "Завершён", "#22c55e", True, True, 50),
    ("no_show", "Не пришёл", "#6b7280", False, True, 60),
    ("cancelled", "Отменён", "#9ca3af", False, True, 70),
]
KINDS = [
    ("primary", "Первичный приём", 30),
    ("repeat", "Повторный приём", 20),
    ("consultation", "Консультация", 30),
    ("procedure", "Процедура", 15),
]
CANCEL_REASONS = [
    ("patient_request", "По просьбе пациента"),
    ("patient_ill", "Пациент заболел"),
    ("doctor_absent", "Отсутствие врача"),
    ("clinic_reschedule", "Перенос по инициативе клиники"),
    ("duplicate", "Ошибочная запись"),
    ("other", "Другое"),
]
SOURCES = [
    ("website", "Сайт клиники"),
    ("referral", "Рекомендация"),
    ("advertising", "Реклама"),
    ("aggregator", "Агрегатор"),
    ("returning", "Постоянный пациент"),
    ("other", "Другое"),
]


def forward(apps, schema_editor):
    Status = apps.get_model("scheduling", "AppointmentStatus")
    Kind = apps.get_model("scheduling", "AppointmentKind")
    Reason = apps.get_model("scheduling", "CancelReason")
    Source = apps.get_model("scheduling", "InformationSource")
    for code, name, colour, occupies, is_final, order in STATUSES:
        Status.objects.update_or_create(
            code=code,
            defaults={
                "name": name,
                "colour": colour,
                "occupies": occupies,
                "is_final": is_final,
                "order": order,
            },
        )
    for code, name, minutes in KINDS:
        Kind.objects.update_or_create(
            code=code, defaults={"name": name, "default_duration_minutes": minutes}
        )
    for code, name in CANCEL_REASONS:
        Reason.objects.update_or_create(code=code, defaults={"name": name})
    for code, name in SOURCES:
        Source.objects.update_or_create(code=code, defaults={"name": name})


def backward(apps, schema_editor):
    apps.get_model("scheduling", "AppointmentStatus").objects.filter(
        code__in=[row[0] for row in STATUSES]
    ).delete()
    apps.get_model("scheduling", "AppointmentKind").objects.filter(
        code__in=[row[0] for row in KINDS]
    ).delete()
    apps.get_model("scheduling", "CancelReason").objects.filter(
        code__in=[row[0] for row in CANCEL_REASONS]
    ).delete()
    apps.get_model("scheduling", "InformationSource").objects.filter(
        code__in=[row[0] for row in SOURCES]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0001_resources_schedules_appointments")]

    operations = [migrations.RunPython(forward, backward)]

from django.db import migrations

STANDARD_CARD_TYPES = [
    ("outpatient", "Амбулаторная карта (025/у)", "А"),
    ("dental", "Стоматологическая карта (043/у)", "С"),
    ("venereology", "Карта венерологического больного (065/у)", "В"),
    ("paediatric", "История развития ребёнка (112/у)", "Д"),
    ("inpatient", "Карта стационарного больного (003/у)", "Ст"),
    ("occupational", "Карта профосмотра", "П"),
]


def add_standard_card_types(apps, schema_editor):
    card_type = apps.get_model("patients", "CardType")
    for code, name, prefix in STANDARD_CARD_TYPES:
        card_type.objects.get_or_create(
            organization=None, code=code, defaults={"name": name, "number_prefix": prefix}
        )


def remove_standard_card_types(apps, schema_editor):
    card_type = apps.get_model("patients", "CardType")
    codes = [code for code, _name, _prefix in STANDARD_CARD_TYPES]
    card_type.objects.filter(organization=None, code__in=codes, cards__isnull=True).delete()


class Migration(migrations.Migration):
    """The card types every clinic has; clinics add their own in the admin."""

    dependencies = [("patients", "0001_patient_registry")]

    operations = [migrations.RunPython(add_standard_card_types, remove_standard_card_types)]
